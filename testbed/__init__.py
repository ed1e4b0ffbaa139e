"""What the tests and the benchmarks share on the test bed: where its caches live, the fixture
weights and how they are served, the loopback ModelScope hub, the network guard, servers and the
routed deployment, a real Prometheus, the hostile input tables and the target-vLLM probes.

Neither the wheel nor the image carries it: it runs from the checkout (PYTHONPATH=.).
"""
