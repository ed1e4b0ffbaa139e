"""Overload on one server and on two replicas behind vllm-router, admission control off and on:
`make bench-overload`.

For each setting the deployment is started: one `entrypoint serve` (CPU, fixture weights,
MAX_NUM_SEQS=4), or two of them behind the router's image (`compose/router`, on the host
network, with compose/router/start.sh's flags and the deployment's default cache_aware policy).
Its capacity is measured closed-loop (MAX_NUM_SEQS clients per replica, back to back), then
requests arrive open-loop at 1x, 2x, 4x and 8x that rate for WINDOW seconds each. Per level:
goodput (completed requests per second), p50/p99 time to first token of admitted requests, the
share rejected (429/503), 5xx, failures of a /health poll of every process every 0.5 s, replicas
the router took out of rotation (its vllm_router_worker_health), vLLM restarts (the state's server
pid) and the peak memory of every process tree (the router's container included).
Results: bench/results/overload.{json,md}.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bundle_server, cpu_facts, wait_bundle, write_report
from entrypoint.state import StateDir
from testbed.fixture import EAGER_CPU, SERVED_NAME, fixture_weights, served_fixture
from testbed.net import free_port
from testbed.paths import COMPILE_CACHE
from verification.load import percentile

MAX_NUM_SEQS = 4
REPLICAS = 2
ROUTER_IMAGE = "ascend-serve-router:local"
LEVELS = (1, 2, 4, 8)
WINDOW = 10.0  # seconds of arrivals per level
CAPACITY_SECONDS = 15.0
REQUEST_TIMEOUT = 180.0
BODY = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "Count to twenty."}],
        "max_tokens": 16, "ignore_eos": True, "stream": True}


def settings(workdir: Path, weights: Path, port: int, admission: bool, queued: int | None) -> dict[str, str]:
    return {"PLATFORM": "cpu", "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": "0",
            **served_fixture(weights), **EAGER_CPU, "MAX_MODEL_LEN": "1024",
            "MAX_NUM_SEQS": str(MAX_NUM_SEQS), "MODEL_CACHE_DIR": str(workdir / "c"),
            "COMPILE_CACHE_DIR": str(COMPILE_CACHE), "STATE_DIR": str(workdir / "state"),
            "ADMISSION_CONTROL": "true" if admission else "false",
            **({"ADMIT_MAX_QUEUED": str(queued)} if queued is not None else {})}


def one_request(url: str) -> dict[str, Any]:
    """One streamed chat completion: status, time to first token, duration."""
    began = time.monotonic()
    try:
        with requests.post(f"{url}/v1/chat/completions", json=BODY, stream=True, timeout=REQUEST_TIMEOUT) as answer:
            first = None
            if answer.status_code == 200:
                for line in answer.iter_lines():
                    if first is None and line.startswith(b"data: {") and b'"content"' in line:
                        first = time.monotonic() - began
            return {"status": answer.status_code, "ttft": first, "seconds": time.monotonic() - began}
    except requests.RequestException as exc:
        return {"status": type(exc).__name__, "ttft": None, "seconds": time.monotonic() - began}


def capacity(url: str, clients: int) -> float:
    """Completed requests per second with `clients` back to back."""
    done: list[float] = []
    stop = time.monotonic() + CAPACITY_SECONDS

    def client() -> None:
        while time.monotonic() < stop:
            if one_request(url)["status"] == 200:
                done.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(done) / (time.monotonic() - began)


@dataclass
class Deployment:
    """What a level sends to (url) and watches: every /health, every process tree, the router's metrics."""

    url: str
    health: list[str]
    roots: list[int]
    router_metrics: str | None = None
    replicas: int = 1


OUT_OF_ROTATION = re.compile(r'^vllm_router_worker_health\{[^}]*worker="([^"]+)"[^}]*\} 0(?:\.0)?$', re.MULTILINE)


@dataclass
class Watch:
    """Every /health and the router's view of its replicas every 0.5 s, and the memory, while a level runs."""

    deployment: Deployment
    health_failures: int = 0
    peak_rss: int = 0
    ejected: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.health_failures += sum(not answers(url) for url in self.deployment.health)
            self.peak_rss = max(self.peak_rss, sum(group_rss(root) for root in self.deployment.roots))
            if self.deployment.router_metrics:
                with contextlib.suppress(requests.RequestException):
                    metrics = requests.get(self.deployment.router_metrics, timeout=2).text
                    self.ejected |= set(OUT_OF_ROTATION.findall(metrics))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def group_rss(root: int) -> int:
    """Resident bytes of `root` and every descendant (vLLM runs in a session of its own under it)."""
    return sum(int(fields[21]) * os.sysconf("SC_PAGE_SIZE") for fields in tree_stat(root).values())


def tree_stat(root: int) -> dict[int, list[str]]:
    """/proc/PID/stat of `root` and every descendant, by pid: the fields after the command's name."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, fields in stats.items() if int(fields[1]) in frontier} - tree
        tree |= frontier
    return {pid: stats[pid] for pid in tree if pid in stats}


def level(deployment: Deployment, rate: float) -> dict[str, Any]:
    """Open-loop arrivals at `rate` per second for WINDOW seconds."""
    url, watch = deployment.url, Watch(deployment)
    count = max(1, round(rate * WINDOW))
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = []
        for i in range(count):
            time.sleep(max(0.0, began + i / rate - time.monotonic()))
            futures.append(pool.submit(one_request, url))
        answers = [f.result() for f in futures]
    elapsed = time.monotonic() - began
    watch.stop()
    ok = [a for a in answers if a["status"] == 200]
    ttfts = sorted(a["ttft"] for a in ok if a["ttft"] is not None)
    rejected = [a for a in answers if a["status"] in (429, 503)]
    return {"offered_rps": round(rate, 3), "requests": count, "completed": len(ok),
            "goodput_rps": round(len(ok) / elapsed, 3),
            "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
            "ttft_p99_s": round(percentile(ttfts, 99), 3) if ttfts else None,
            "rejected_share": round(len(rejected) / count, 3),
            "fast_rejections_p99_s": round(percentile([a["seconds"] for a in rejected], 99), 3)
            if rejected else None,
            "http_5xx": sum(isinstance(a["status"], int) and a["status"] >= 500 and a["status"] != 503
                            for a in answers),
            "http_503": sum(a["status"] == 503 for a in answers),
            "client_errors": sum(not isinstance(a["status"], int) for a in answers),
            "probe_failures": watch.health_failures, "replicas_ejected": len(watch.ejected),
            "peak_memory_mib": round(watch.peak_rss / 2**20)}


def run_setting(weights: Path, admission: bool, queued: int | None = None) -> dict[str, Any]:
    with replicas_up(weights, 1, admission, queued) as (urls, children, states):
        deployment = Deployment(urls[0], [f"{urls[0]}/health"], [child.pid for child in children])
        return measured(deployment, states) | {"admission_control": admission, "admit_max_queued": queued_bound(
            admission, queued)}


def run_routed(weights: Path, admission: bool, router_bounds: dict[str, int] | None = None) -> dict[str, Any]:
    """Two replicas behind the router; admission at the replicas (ADMISSION_CONTROL) or at the router."""
    with replicas_up(weights, REPLICAS, admission, None) as (urls, children, states), \
            router_up(urls, router_bounds or {}) as (url, metrics, router_pid):
        deployment = Deployment(url, [f"{u}/health" for u in [url, *urls]],
                                [router_pid, *(child.pid for child in children)], metrics, REPLICAS)
        return measured(deployment, states) | {"admission_control": admission, "router_bounds": router_bounds,
                                               "admit_max_queued": queued_bound(admission, None)}


def queued_bound(admission: bool, queued: int | None) -> int | None:
    return queued if queued is not None else (MAX_NUM_SEQS if admission else None)


def measured(deployment: Deployment, states: list[StateDir]) -> dict[str, Any]:
    pids = [(state.state() or {}).get("server_pid") for state in states]
    rate = capacity(deployment.url, MAX_NUM_SEQS * deployment.replicas)
    levels = {f"{x}x": level(deployment, rate * x) for x in LEVELS}
    restarts = sum((state.state() or {}).get("server_pid") != pid for state, pid in zip(states, pids, strict=True))
    return {"replicas": deployment.replicas, "capacity_rps": round(rate, 3), "levels": levels,
            "vllm_restarts": restarts}


@contextlib.contextmanager
def replicas_up(weights: Path, count: int, admission: bool, queued: int | None, extra: dict[str, str] | None = None,
                ports: list[int] | None = None) -> Iterator[tuple[list[str], list[Any], list[StateDir]]]:
    """`count` supervised servers, started side by side and waited for; `extra` settings over the ones here,
    on `ports` (free ones by default)."""
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp, contextlib.ExitStack() as stack:
        urls, children, states = [], [], []
        for n in range(count):
            workdir, port = Path(tmp) / str(n), ports[n] if ports else free_port()
            workdir.mkdir()
            env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1",
                   **({"LD_PRELOAD": os.environ["LD_PRELOAD"]} if "LD_PRELOAD" in os.environ else {}),
                   **settings(workdir, weights, port, admission, queued), **(extra or {})}
            children.append(stack.enter_context(bundle_server(env, workdir / "serve.log")))
            urls.append(f"http://127.0.0.1:{port}")
            states.append(StateDir(workdir / "state"))
        for n, child in enumerate(children):
            wait_bundle(Path(tmp) / str(n) / "state", child, Path(tmp) / str(n) / "serve.log", 1.0)
        yield urls, children, states


@contextlib.contextmanager
def router_up(workers: list[str], bounds: dict[str, int], policy: str = "cache_aware",
              ports: tuple[int, int] | None = None, name: str = "overload-router") -> Iterator[tuple[str, str, int]]:
    """The router's image on the host network with compose/router/start.sh's flags; its URL, metrics URL, pid.
    `ports`: its own and its metrics' (free ones by default); `name`: the container's, before the pid."""
    (port, metrics_port), name = ports or (free_port(), free_port()), f"{name}-{os.getpid()}"
    flags = {"max_concurrent": "--max-concurrent-requests", "queue_size": "--queue-size",
             "queue_timeout": "--queue-timeout-secs"}
    argv = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host", "--entrypoint", "vllm-router",
            ROUTER_IMAGE, "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
            "--health-check-endpoint", "/health", "--health-check-interval-secs", "5",
            "--health-failure-threshold", "2", "--retry-max-retries", "3", "--prometheus-host", "127.0.0.1",
            "--prometheus-port", str(metrics_port), "--worker-urls", *workers,
            *(arg for key, value in bounds.items() for arg in (flags[key], str(value)))]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not answers(f"{url}/health"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the router did not answer /health within 120 s (docker logs {name})")
            time.sleep(0.5)
        pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
                                 text=True, check=True, timeout=60).stdout)
        yield url, f"http://127.0.0.1:{metrics_port}/metrics", pid
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


def router_image() -> None:
    """The router's image, built from compose/router if this engine has none (its layers are cached)."""
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode:
        raise SystemExit("bench-overload: no Docker engine answers; the routed runs start the router's image "
                         "(scripts/testbed/docker-engine.sh start on the test bed)")
    if subprocess.run(["docker", "image", "inspect", ROUTER_IMAGE], capture_output=True, timeout=60).returncode:
        done = subprocess.run(["docker", "build", "--network", "host", "-t", ROUTER_IMAGE,
                               str(Path(__file__).resolve().parents[1] / "compose" / "router")],
                              env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True,
                              timeout=1800)
        if done.returncode:
            raise SystemExit(f"building {ROUTER_IMAGE} failed: {done.stderr.strip().splitlines()[-1:]}")


def title(run: dict[str, Any]) -> str:
    where = "One server" if run["replicas"] == 1 else f"{run['replicas']} replicas behind the router"
    if run.get("router_bounds"):
        bounds = ", ".join(f"ROUTER_{key.upper()}={value}" for key, value in run["router_bounds"].items())
        return f"{where}, admission at the router ({bounds})"
    if run["admission_control"]:
        at = " at each replica" if run["replicas"] > 1 else ""
        return f"{where}, admission control on{at}, ADMIT_MAX_QUEUED={run['admit_max_queued']}"
    return f"{where}, admission control off"


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Overload: one server and two routed replicas, admission control off and on", "",
             f"CPU fixture servers, MAX_NUM_SEQS={MAX_NUM_SEQS} each (admission defaults: {MAX_NUM_SEQS} running, "
             f"{MAX_NUM_SEQS} queued, 10 s queue timeout); streamed chats of 16 tokens; arrivals open-loop for "
             f"{WINDOW:g} s per level at multiples of the capacity measured closed-loop ({MAX_NUM_SEQS} clients per "
             "replica). The routed runs put vllm-router (the bundle's router image, cache_aware, 3 retries) in "
             "front of two replicas on the same 2 cores. `make bench-overload`, all runs in one.", ""]
    for run in result["runs"]:
        lines += [f"## {title(run)} (capacity {run['capacity_rps']} req/s, vLLM restarts {run['vllm_restarts']})",
                  "", "| load | offered req/s | goodput req/s | TTFT p50 s | TTFT p99 s | rejected | 5xx | 503 | "
                  "client errors | probe failures | ejected | peak MiB |", "|---" * 12 + "|"]
        for name, lv in run["levels"].items():
            lines.append(f"| {name} | {lv['offered_rps']} | {lv['goodput_rps']} | {lv['ttft_p50_s']} | "
                         f"{lv['ttft_p99_s']} | {lv['rejected_share']:.0%} | {lv['http_5xx']} | {lv['http_503']} | "
                         f"{lv['client_errors']} | {lv['probe_failures']} | {lv['replicas_ejected']} | "
                         f"{lv['peak_memory_mib']} |")
        lines.append("")
    lines += ["Goal (admission on): p99 TTFT at 4x within 2x of 1x, 0 5xx, 0 probe failures:", "",
              *(f"- {name}: {verdict}" for name, verdict in result["goal"].items()), "",
              "The machine is shared (2 cores), so capacity itself varies between runs; a queued request waits up "
              "to one batch's duration, which a queue bound of 0 leaves out. Probe failures count every /health "
              "poll (router and replicas) that did not answer 200. Ejected: replicas the router reported out of "
              "rotation at any poll. Peak MiB: the summed RSS of every process tree, the router's container "
              "included (pages shared between processes counted in each).", "",
              "Reading it:", "",
              "- A bound on what runs keeps the admitted requests' TTFT flat as the load grows (2x to 8x above), "
              "where without one it grows with the queue. It is measured against 1x, where the batch is mostly "
              "empty; at the bound the batch is full (MAX_NUM_SEQS), and a full batch's own TTFT is what the 4x "
              "point shows. A goal missed by one server is that ratio, with 0 5xx and 0 probe failures.",
              "- vllm-router's `--max-concurrent-requests` is documented as a token bucket (refilled at "
              "`--rate-limit-tokens-per-second`, by default that number per second), not a count of requests in "
              "flight. Measured: at 8 with no queue it shed nothing at up to 13.7 req/s offered, and the replicas "
              "queued as without a bound; at 1 it sheds a burst of 8 at once (the container test). Behind the "
              "router, bound the work at the replicas (ADMISSION_CONTROL): each replica's 429 passes back through "
              "the router with its "
              "Retry-After once the router's retries found every replica full.", ""]
    return "\n".join(lines)


def goal(run: dict[str, Any]) -> str:
    one, four = run["levels"]["1x"], run["levels"]["4x"]
    if one["ttft_p99_s"] is None or four["ttft_p99_s"] is None:
        return "not measurable (no admitted request)"
    met = four["ttft_p99_s"] <= 2 * one["ttft_p99_s"] and four["http_5xx"] == 0 and four["probe_failures"] == 0
    return (f"{'met' if met else 'not met'} (p99 TTFT {four['ttft_p99_s']} s at 4x vs {one['ttft_p99_s']} s at 1x, "
            f"{four['http_5xx']} 5xx, {four['probe_failures']} probe failures)")


def main() -> int:
    weights = fixture_weights()
    router_image()
    # One server: off, on with the default queue (one batch), on with no queue (past the running bound: 429).
    # Routed: off, the replicas' own admission, and the router's (as many in flight as the replicas run, no queue).
    runs = [run_setting(weights, False), run_setting(weights, True), run_setting(weights, True, queued=0),
            run_routed(weights, False), run_routed(weights, True),
            run_routed(weights, False, {"max_concurrent": REPLICAS * MAX_NUM_SEQS, "queue_size": 0})]
    result = {"machine": cpu_facts(), "max_num_seqs": MAX_NUM_SEQS, "window_seconds": WINDOW, "runs": runs,
              "goal": {title(run): goal(run) for run in runs if run["admission_control"] or run.get("router_bounds")}}
    write_report("overload", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
