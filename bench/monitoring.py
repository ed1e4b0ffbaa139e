"""What an operator sees: the dashboard's key panels over a real run, drawn from Prometheus.

Starts the bundle (eager CPU server, fixture weights) with its metrics port, a real Prometheus
(Debian's package) scraping both endpoints every second with the bundle's rules, then:
idle, chat requests at concurrency 1, then at 8, idle again, the engine core SIGSTOPped (the
canary notices; vLLM's /health does not) and SIGCONTed. Each panel's PromQL comes from the
dashboard itself (observability/dashboard.py) and is read back through Prometheus's
query_range API.

Writes bench/results/monitoring.{json,md,png}. Usage:
    python bench/monitoring.py [--phase-seconds 60] [--stop-seconds 30] [--model-path DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, bundle_server, cpu_facts, wait_bundle, write_report  # noqa: E402
from bench.monitoring_plot import PANELS, RATE_WINDOW, panel_series, plot  # noqa: E402
from entrypoint.state import StateDir  # noqa: E402
from testbed.fixture import FAST_CPU, SERVED_NAME, fixture_weights  # noqa: E402
from testbed.net import free_port  # noqa: E402
from testbed.paths import COMPILE_CACHE  # noqa: E402
from testbed.prometheus import prometheus, query, query_range, wait_for  # noqa: E402
from testbed.servers import NETGUARD, engine_core_pid, resume_session  # noqa: E402

MODEL = SERVED_NAME
STEP_SECONDS = 2.0


def settings(workdir: Path, weights: str, port: int, metrics_port: int) -> dict[str, str]:
    """The integration tests' fast CPU server, a canary that looks every 5 s, on loopback."""
    return {**FAST_CPU, "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(metrics_port),
            "MODEL_SOURCE": weights, "MODEL_CACHE_DIR": str(workdir / "cache"),
            "COMPILE_CACHE_DIR": str(COMPILE_CACHE), "STATE_DIR": str(workdir / "state"),
            "CANARY_INTERVAL": "5", "CANARY_TIMEOUT": "5", "CANARY_FAILURES": "3",
            "CANARY_ACTION": "report"}


def chat(url: str, n: int) -> bool:
    answer = requests.post(f"{url}/v1/chat/completions", timeout=300, json={
        "model": MODEL, "max_tokens": 32, "temperature": 0.7,
        "messages": [{"role": "user", "content": f"Write a short note about observability, number {n}."}]})
    return answer.status_code == 200


def load(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` clients sending chat requests back to back for `seconds`."""
    deadline, counts, lock = time.monotonic() + seconds, {"ok": 0, "failed": 0}, threading.Lock()

    def client(worker: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            ok = chat(url, worker * 1000 + n)
            n += 1
            with lock:
                counts["ok" if ok else "failed"] += 1

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    return {"concurrency": concurrency, "seconds": seconds, **counts}


@contextlib.contextmanager
def stopped(server_pid: int) -> Iterator[int]:
    """The engine core SIGSTOPped; every process in vLLM's session SIGCONTed on leaving."""
    core = engine_core_pid(server_pid)
    os.kill(core, signal.SIGSTOP)
    try:
        yield core
    finally:
        resume_session(server_pid)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start everything, play the phases, return the phases and every panel's series."""
    weights, port, metrics_port = args.model_path or str(fixture_weights()), free_port(), free_port()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(NETGUARD), **settings(workdir, weights, port, metrics_port)}
    (workdir / "prometheus").mkdir()
    with prometheus(workdir / "prometheus", port, metrics_port) as prom:
        start = time.time()
        with bundle_server(env, workdir / "serve.log") as child:
            ready_s = wait_bundle(workdir / "state", child, workdir / "serve.log", poll=1.0)
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: len(query(prom, "up == 1")) == 2, "scrape of both endpoints")
            phases = [phase("idle", lambda: time.sleep(args.idle_seconds))]
            phases.append(phase("c=1", lambda: load(url, 1, args.phase_seconds)))
            phases.append(phase("c=8", lambda: load(url, 8, args.phase_seconds)))
            phases.append(phase("idle", lambda: time.sleep(args.idle_seconds)))
            server_pid = StateDir(workdir / "state").state()["server_pid"]
            phases.append(phase("engine stopped", lambda: sleep_stopped(server_pid, args.stop_seconds)))
            phases.append(phase("resumed", lambda: time.sleep(args.idle_seconds)))
            end = time.time()
            panels = {title: panel_series(title, lambda expr: query_range(prom, expr, start, end, STEP_SECONDS))
                      for title in PANELS}
    return {"ready_s": round(ready_s, 1), "start": start, "phases": phases, "panels": panels}


def sleep_stopped(server_pid: int, seconds: float) -> None:
    with stopped(server_pid):
        time.sleep(seconds)


def phase(name: str, action) -> dict[str, Any]:
    """Run one phase; its name, wall-clock bounds and whatever it returned."""
    began = time.time()
    print(f"monitoring: {name}", file=sys.stderr)
    outcome = action()
    return {"name": name, "start": began, "end": time.time(), **(outcome or {})}


def markdown(result: dict[str, Any]) -> str:
    """The report: the phases and each panel's peak per series."""
    machine, t0 = result["machine"], result["start"]
    out = [f"# Monitoring: what an operator sees\n\nDate {result['date']}, commit `{result['commit']}`, "
           f"{machine['cpu']} ({machine['cores']} cores). Eager CPU server (fixture Gemma 3 270M weights), ready "
           f"after {result['ready_s']} s; Prometheus scraped vLLM and the supervisor every second with the "
           f"bundle's rules; panels read back with query_range (step {STEP_SECONDS:.0f} s, rate window "
           f"{result['rate_window']}).\n", "![monitoring](monitoring.png)\n",
           "| phase | from s | to s | requests ok | failed |\n|---|---|---|---|---|"]
    out += [f"| {p['name']} | {p['start'] - t0:.0f} | {p['end'] - t0:.0f} | {p.get('ok', '')} | "
            f"{p.get('failed', '')} |" for p in result["phases"]]
    out.append("\n| panel | series | peak | last |\n|---|---|---|---|")
    for title, series in result["panels"].items():
        out += [f"| {title} | {s['label']} | {number(max(known(s), default=None))} | "
                f"{number(s['values'][-1] if s['values'] else None)} |" for s in series]
    out.append("\nReproduce: `make bench-monitoring` (= `python bench/monitoring.py`).")
    return "\n".join(out) + "\n"


def known(series: dict[str, Any]) -> list[float]:
    return [v for v in series["values"] if v is not None]


def number(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-seconds", type=float, default=60.0, help="seconds of load at c=1 and at c=8")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--stop-seconds", type=float, default=40.0, help="seconds the engine core stays stopped")
    parser.add_argument("--model-path")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="monitoring-") as tmp:
        result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
                  "machine": cpu_facts(), "rate_window": RATE_WINDOW, **run(args, Path(tmp))}
    plot(result["panels"], result["phases"], result["start"], RESULTS / "monitoring.png",
         f"ascend-serve dashboard, real run: {result['machine']['cpu']}, {result['machine']['cores']} cores")
    write_report("monitoring", result, markdown(result))


if __name__ == "__main__":
    main()
