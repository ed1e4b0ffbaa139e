"""A real Prometheus (Debian's package) on loopback, scraping the bundle with the very rules
files Compose's image bakes in, and its HTTP query API."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
import yaml

from testbed.net import free_port
from testbed.paths import ROOT

RULES = ROOT / "observability" / "rules"
WAIT_SECONDS = 300  # bounds a hang only: data needs a few scrapes, an alert its `for:`


class PrometheusError(RuntimeError):
    """Prometheus is missing, exited, or a condition never held."""


def config(vllm_port: int, metrics_port: int, interval: str = "1s") -> dict:
    """Scrape vLLM and the supervisor every `interval`, evaluating the bundle's rules as often."""
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(RULES / "*.yaml")],
            "scrape_configs": [{"job_name": "vllm", "static_configs": [{"targets": [f"127.0.0.1:{vllm_port}"]}]},
                               {"job_name": "ascend-serve",
                                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]}


@contextlib.contextmanager
def prometheus(folder: Path, vllm_port: int, metrics_port: int, interval: str = "1s") -> Iterator[str]:
    """Prometheus's base URL once it is ready; stopped on leaving."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError("prometheus not found: install Debian's `prometheus` package "
                              "(apt-get install prometheus)")
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config(vllm_port, metrics_port, interval)))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        process = subprocess.Popen([binary, f"--config.file={folder / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={folder / 'tsdb'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/-/ready", process, folder / "prometheus.log"), "ready Prometheus")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str, process: subprocess.Popen, log: Path) -> bool:
    """Whether `url` answers 200; raises with Prometheus's log if it exited."""
    if process.poll() is not None:
        raise PrometheusError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise PrometheusError(f"no {what} after {WAIT_SECONDS} s")
        time.sleep(2)


def api(url: str, endpoint: str, **params: object) -> list[dict]:
    """The `result` of one call to Prometheus's query API."""
    answer = requests.get(f"{url}/api/v1/{endpoint}", params=params, timeout=30)
    if answer.status_code != 200:
        raise PrometheusError(f"{endpoint} {params}: {answer.status_code} {answer.text}")
    return answer.json()["data"]["result"]


def query(url: str, promql: str) -> list[dict]:
    return api(url, "query", query=promql)


def query_range(url: str, promql: str, start: float, end: float, step: float) -> list[dict]:
    return api(url, "query_range", query=promql, start=start, end=end, step=step)


def firing(url: str, alert: str) -> bool:
    alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return any(a["labels"]["alertname"] == alert and a["state"] == "firing" for a in alerts)
