"""Monitoring of the bundle: Prometheus rules, the Grafana dashboard, the Prometheus image."""
