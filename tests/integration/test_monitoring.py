"""A real Prometheus (Debian's package) scraping a real server under a short load: every
recording rule and every dashboard query returns data, and the hung-engine alert fires when
the engine core is SIGSTOPped.

Prometheus runs as a process on loopback beside the supervisor, scraping both endpoints
every second, with the very rules files Compose's image bakes in."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
import yaml

from observability.dashboard import dashboard, queries, substituted
from tests.integration.conftest import canary_server, engine_core_pid
from tests.support.net import free_port
from tests.support.prometheus import RULES, firing, prometheus, query, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.starts_vllm]


def load(url: str) -> None:
    """Eight short completions at once, sharing a prompt prefix (so the prefix cache is asked)."""
    def one(n: int) -> None:
        requests.post(f"{url}/v1/completions", timeout=300, json={
            "model": "gemma-3-270m-it", "prompt": "The capital of France is Paris. " * 8 + str(n),
            "max_tokens": 16, "temperature": 0})
    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_rules_and_dashboard_return_data_and_the_hung_engine_alert_fires(tmp_path, hub, warm_cache):
    metrics_port = free_port()
    for folder in ("server", "prometheus"):
        (tmp_path / folder).mkdir()
    with canary_server(tmp_path / "server", hub, warm_cache, METRICS_PORT=str(metrics_port),
                       ENABLE_PREFIX_CACHING="true") as server:
        vllm_port = int(server.url.rsplit(":", 1)[1])
        with prometheus(tmp_path / "prometheus", vllm_port, metrics_port) as url:
            wait_for(lambda: len(query(url, "up == 1")) == 2, "scrape of both endpoints")
            load(server.url)
            time.sleep(5)  # a few more scrapes after the load, for every rate() window
            load(server.url)

            records = sorted({rule["record"] for group in yaml.safe_load((RULES / "recording.yaml").read_text())
                              ["groups"] for rule in group["rules"]})
            wait_for(lambda: all(query(url, record) for record in records), "data for every recording rule")

            empty = [(title, expr) for title, expr in queries(dashboard()) if not query(url, substituted(expr))]
            assert empty == [], empty
            assert not firing(url, "AscendServeEngineHung")

            core = engine_core_pid(server.state.state()["server_pid"])
            os.kill(core, signal.SIGSTOP)
            try:
                wait_for(lambda: firing(url, "AscendServeEngineHung"), "AscendServeEngineHung firing")
            finally:
                os.kill(core, signal.SIGCONT)
