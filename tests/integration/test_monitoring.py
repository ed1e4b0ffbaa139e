"""A real Prometheus (Debian's package) scraping a real server under a short load: every
recording rule and every dashboard query returns data, and the hung-engine alert fires when
the engine core is SIGSTOPped.

Prometheus runs as a process on loopback beside the supervisor, scraping both endpoints
every second, with the very rules files Compose's image bakes in."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml

from observability.dashboard import dashboard, queries
from tests.integration.conftest import canary_server, engine_core_pid
from tests.support.net import free_port
from tests.unit.test_dashboard import substituted
from tests.unit.test_prometheus_rules import RULES

pytestmark = [pytest.mark.integration, pytest.mark.starts_vllm]
WAIT_SECONDS = 300  # bounds a hang only: data needs a few scrapes, the alert its `for: 1m`


@contextlib.contextmanager
def prometheus(tmp_path: Path, vllm_port: int, metrics_port: int) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's `prometheus` package (apt-get install prometheus)")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES / "*.yaml")],
              "scrape_configs": [{"job_name": "vllm", "static_configs": [{"targets": [f"127.0.0.1:{vllm_port}"]}]},
                                 {"job_name": "ascend-serve",
                                  "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/-/ready", process, tmp_path / "prometheus.log"), "ready Prometheus")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str, process: subprocess.Popen, log: Path) -> bool:
    """Whether `url` answers 200; fails with Prometheus's log if it exited."""
    if process.poll() is not None:
        pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {WAIT_SECONDS} s")
        time.sleep(2)


def query(url: str, promql: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    assert answer.status_code == 200, (promql, answer.text)
    return answer.json()["data"]["result"]


def firing(url: str, alert: str) -> bool:
    alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return any(a["labels"]["alertname"] == alert and a["state"] == "firing" for a in alerts)


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
