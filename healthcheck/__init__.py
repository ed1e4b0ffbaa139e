"""Probe for Docker HEALTHCHECK and Kubernetes startup/readiness/liveness: `python -m healthcheck`."""
