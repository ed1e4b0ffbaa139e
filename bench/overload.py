"""Overload on one server, with admission control off and on: `make bench-overload`.

For each setting one `entrypoint serve` (CPU, fixture weights, MAX_NUM_SEQS=4) is started; its
capacity is measured closed-loop (MAX_NUM_SEQS clients back to back), then requests arrive
open-loop at 1x, 2x, 4x and 8x that rate for WINDOW seconds each. Per level: goodput
(completed requests per second), p50/p99 time to first token of admitted requests, the share
rejected (429/503), 5xx, failures of a /health poll every 0.5 s, vLLM restarts (the state's
server pid) and the peak memory of the server's process group.

The routed half of the issue (two replicas behind vllm-router) is not measured here.
A third run bounds the queue at 0. Results: bench/results/overload.{json,md}.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bundle_server, cpu_facts, free_port, wait_bundle, write_report
from entrypoint.state import StateDir
from tests.support.testbed import COMPILE_CACHE, fixture_weights

MAX_NUM_SEQS = 4
LEVELS = (1, 2, 4, 8)
WINDOW = 10.0  # seconds of arrivals per level
CAPACITY_SECONDS = 15.0
REQUEST_TIMEOUT = 180.0
BODY = {"model": "gemma-3-270m-it", "messages": [{"role": "user", "content": "Count to twenty."}],
        "max_tokens": 16, "ignore_eos": True, "stream": True}


def settings(workdir: Path, weights: Path, port: int, admission: bool, queued: int | None) -> dict[str, str]:
    return {"PLATFORM": "cpu", "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": "0",
            "MODEL_SOURCE": str(weights), "MODEL_PROFILE": "gemma-3-270m-fixture", "DTYPE": "float32",
            "ENFORCE_EAGER": "true", "MAX_MODEL_LEN": "1024", "MAX_NUM_BATCHED_TOKENS": "512",
            "MAX_NUM_SEQS": str(MAX_NUM_SEQS), "VLLM_CPU_KVCACHE_SPACE": "1", "MODEL_CACHE_DIR": str(workdir / "c"),
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


def capacity(url: str) -> float:
    """Completed requests per second with MAX_NUM_SEQS clients back to back."""
    done: list[float] = []
    stop = time.monotonic() + CAPACITY_SECONDS

    def client() -> None:
        while time.monotonic() < stop:
            if one_request(url)["status"] == 200:
                done.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(MAX_NUM_SEQS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(done) / (time.monotonic() - began)


class Watch:
    """/health every 0.5 s and the process group's memory, while a level runs."""

    def __init__(self, url: str, pgid: int) -> None:
        self.url, self.pgid = url, pgid
        self.health_failures = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                ok = requests.get(f"{self.url}/health", timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            self.health_failures += not ok
            self.peak_rss = max(self.peak_rss, group_rss(self.pgid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def group_rss(root: int) -> int:
    """Resident bytes of `root` and every descendant (vLLM runs in a session of its own under it)."""
    parents, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return sum(rss.get(pid, 0) for pid in tree)


def level(url: str, root: int, rate: float) -> dict[str, Any]:
    """Open-loop arrivals at `rate` per second for WINDOW seconds."""
    watch = Watch(url, root)
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
            "ttft_p99_s": round(quantile(ttfts, 0.99), 3) if ttfts else None,
            "rejected_share": round(len(rejected) / count, 3),
            "fast_rejections_p99_s": round(quantile(sorted(a["seconds"] for a in rejected), 0.99), 3)
            if rejected else None,
            "http_5xx": sum(isinstance(a["status"], int) and a["status"] >= 500 and a["status"] != 503
                            for a in answers),
            "http_503": sum(a["status"] == 503 for a in answers),
            "client_errors": sum(not isinstance(a["status"], int) for a in answers),
            "probe_failures": watch.health_failures, "peak_memory_mib": round(watch.peak_rss / 2**20)}


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def run_setting(weights: Path, admission: bool, queued: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        workdir, port = Path(tmp), free_port()
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1",
               **({"LD_PRELOAD": os.environ["LD_PRELOAD"]} if "LD_PRELOAD" in os.environ else {}),
               **settings(workdir, weights, port, admission, queued)}
        with bundle_server(env, workdir / "serve.log") as child:
            wait_bundle(workdir / "state", child, workdir / "serve.log", 1.0)
            url = f"http://127.0.0.1:{port}"
            pid = (StateDir(workdir / "state").state() or {}).get("server_pid")
            rate = capacity(url)
            levels = {f"{x}x": level(url, child.pid, rate * x) for x in LEVELS}
            restarts = int((StateDir(workdir / "state").state() or {}).get("server_pid") != pid)
            return {"admission_control": admission, "admit_max_queued": queued if queued is not None else
                    (MAX_NUM_SEQS if admission else None), "capacity_rps": round(rate, 3), "levels": levels,
                    "vllm_restarts": restarts, "supervisor_alive": child.poll() is None}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Overload: one server, admission control off and on", "",
             f"CPU fixture server, MAX_NUM_SEQS={MAX_NUM_SEQS} (admission defaults: {MAX_NUM_SEQS} running, "
             f"{MAX_NUM_SEQS} queued, 10 s queue timeout); streamed chats of 16 tokens; arrivals open-loop for "
             f"{WINDOW:g} s per level at multiples of the capacity measured closed-loop. `make bench-overload`.", ""]
    for run in result["runs"]:
        state = f"on, ADMIT_MAX_QUEUED={run['admit_max_queued']}" if run["admission_control"] else "off"
        lines += [f"## Admission control {state} (capacity "
                  f"{run['capacity_rps']} req/s, vLLM restarts {run['vllm_restarts']})", "",
                  "| load | offered req/s | goodput req/s | TTFT p50 s | TTFT p99 s | rejected | 5xx | 503 | "
                  "client errors | probe failures | peak MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, lv in run["levels"].items():
            lines.append(f"| {name} | {lv['offered_rps']} | {lv['goodput_rps']} | {lv['ttft_p50_s']} | "
                         f"{lv['ttft_p99_s']} | {lv['rejected_share']:.0%} | {lv['http_5xx']} | {lv['http_503']} | "
                         f"{lv['client_errors']} | {lv['probe_failures']} | {lv['peak_memory_mib']} |")
        lines.append("")
    lines += ["Goal (admission on): p99 TTFT at 4x within 2x of 1x, 0 5xx, 0 probe failures: "
              + "; ".join(f"{name}: {verdict}" for name, verdict in result["goal"].items()) + ".", "",
              "The machine is shared (2 cores, other work beside), so capacity itself varies between runs; "
              "a queued request waits up to one batch's duration, which the no-queue run leaves out. Peak MiB: the "
              "summed RSS of the server's process tree (pages shared between processes counted in each).", "",
              "Not measured here: two replicas behind vllm-router (the router's own "
              "admission flags, ROUTER_MAX_CONCURRENT / ROUTER_QUEUE_SIZE / ROUTER_QUEUE_TIMEOUT).", ""]
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
    # Off, on with the default queue (one batch), on with no queue (every request past the running bound: 429).
    runs = [run_setting(weights, False), run_setting(weights, True), run_setting(weights, True, queued=0)]
    result = {"machine": cpu_facts(), "max_num_seqs": MAX_NUM_SEQS, "window_seconds": WINDOW, "runs": runs,
              "goal": {"default queue": goal(runs[1]), "no queue": goal(runs[2])}}
    write_report("overload", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
