"""Probes under load: vLLM's own `bench serve` keeps the server busy while the bundle's
probes run every second, the way Docker and the kubelet call them.

Each probe is a fresh `python -m healthcheck <name>` process, interpreter start
included, so its latency is what an orchestrator sees.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBES = ("ready", "live")
PROBE_TIMEOUT = 10.0  # the Dockerfile's HEALTHCHECK --timeout


@dataclass
class LoadPlan:
    """One bounded load: how many requests, how many at once, how long each."""

    concurrency: int = 32
    num_prompts: int = 256
    input_len: int = 200
    output_len: int = 200


@dataclass
class ProbeCalls:
    """Every probe call's verdict and latency, by probe name."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in PROBES})
    failures: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in PROBES})

    def record(self, name: str, ok: bool, ms: float, detail: str) -> None:
        self.latencies_ms[name].append(ms)
        if not ok:
            self.failures[name].append(detail)

    def summary(self) -> dict[str, Any]:
        return {name: {"calls": len(values), "failures": len(self.failures[name]),
                       "p50_ms": round(statistics.median(values), 1) if values else None,
                       "p99_ms": round(percentile(values, 99), 1) if values else None,
                       "max_ms": round(max(values), 1) if values else None,
                       "failure_details": self.failures[name][:5]}
                for name, values in self.latencies_ms.items()}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def call_probe(name: str, state_dir: Path, env: dict[str, str]) -> tuple[bool, float, str]:
    """Run one probe process; its verdict, wall time in ms and its output."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "healthcheck", name, "--state-dir", str(state_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT + 20)
    ms = (time.perf_counter() - started) * 1000
    return done.returncode == 0, ms, (done.stdout + done.stderr).strip()


def probe_every_second(state_dir: Path, env: dict[str, str], stop: threading.Event, calls: ProbeCalls) -> None:
    """Call each probe once a second until `stop` is set."""
    while not stop.is_set():
        tick = time.monotonic()
        for name in PROBES:
            ok, ms, detail = call_probe(name, state_dir, env)
            calls.record(name, ok, ms, detail)
        stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))


def bench_serve_argv(url: str, model_name: str, tokenizer: str, plan: LoadPlan, result_dir: Path) -> list[str]:
    """vLLM's `bench serve` for the plan, saving its JSON result in result_dir."""
    return [sys.executable, "-m", "verification.vllm_cli", "bench", "serve", "--backend", "vllm",
            "--base-url", url, "--model", model_name, "--tokenizer", tokenizer, "--dataset-name", "random",
            "--random-input-len", str(plan.input_len), "--random-output-len", str(plan.output_len),
            "--num-prompts", str(plan.num_prompts), "--max-concurrency", str(plan.concurrency),
            "--ignore-eos", "--seed", "1024", "--save-result", "--result-dir", str(result_dir),
            "--result-filename", "load.json", "--disable-tqdm"]


def run_load_with_probes(url: str, model_name: str, tokenizer: str, state_dir: Path, plan: LoadPlan,
                         env: dict[str, str] | None = None, api_key: str | None = None) -> dict[str, Any]:
    """Run the load and the probes side by side; the requests' and the probes' outcomes."""
    env = dict(os.environ if env is None else env)
    if api_key:
        env["OPENAI_API_KEY"] = api_key  # how `bench serve` sends a bearer token
    calls, stop = ProbeCalls(), threading.Event()
    prober = threading.Thread(target=probe_every_second, args=(state_dir, env, stop, calls), daemon=True)
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        started = time.monotonic()
        prober.start()
        try:
            done = subprocess.run(bench_serve_argv(url, model_name, tokenizer, plan, Path(tmp)), cwd=ROOT, env=env,
                                  capture_output=True, text=True)
        finally:
            stop.set()
            prober.join(timeout=PROBE_TIMEOUT + 30)
        seconds = time.monotonic() - started
        result_file = Path(tmp) / "load.json"
        if done.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"bench serve failed ({done.returncode}): {done.stderr[-2000:]}")
        result = json.loads(result_file.read_text())
    completed, failed = int(result.get("completed", 0)), int(result.get("failed", 0))
    return {"plan": asdict(plan), "seconds": round(seconds, 1),
            "requests": {"sent": plan.num_prompts, "completed": completed, "failed": failed,
                         "success_rate": round(completed / plan.num_prompts, 4) if plan.num_prompts else None,
                         "output_tokens_per_s": result.get("output_throughput"),
                         "mean_ttft_ms": result.get("mean_ttft_ms"), "p99_ttft_ms": result.get("p99_ttft_ms"),
                         "errors": [e for e in result.get("errors", []) if e][:5]},
            "probes": calls.summary()}
