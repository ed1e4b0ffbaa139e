"""The guide's performance workloads, run with vLLM's own benchmark commands, and their results parsed.

Each workload is one `vllm bench ...` subprocess (through `verification.vllm_cli`, the
CPU build's runnable CLI) on the random dataset with fixed lengths and a fixed seed;
the numbers come from the JSON vLLM writes. How each guide metric is measured:

- 5.1 offline throughput: `bench throughput` in-process on the weights folder (the
  engine flags are the server's, rendered from the same settings). requests/s and
  total tokens/s are vLLM's JSON; output tokens/s is the output token count vLLM
  prints (random prompts ignore EOS, so it equals prompts x output length) / elapsed.
- 5.2 online: `bench serve --max-concurrency 8` against the running server;
  duration, request/output/total throughput and mean E2E latency are vLLM's fields.
- 5.3 latency: `bench serve --max-concurrency 1` (one request at a time, streamed),
  so total (E2E), TTFT and TPOT come from the same requests, as the guide's numbers
  imply (its mean TTFT + 199 x TPOT ~ its mean total). `bench latency` (in-process,
  batch 1, no HTTP) is reported beside it as the engine-only end-to-end latency.
- the concurrency sweep: `bench serve` at each concurrency against the server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entrypoint.engine_flags import server_only_options
from entrypoint.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
VLLM_CLI = [sys.executable, "-m", "verification.vllm_cli"]
WORKLOADS = ("throughput", "online", "latency", "sweep")


@dataclass(frozen=True)
class BenchLoad:
    """One benchmark load: how many prompts, how long, how many at once (None: offline, all at once)."""

    num_prompts: int
    input_len: int
    output_len: int
    concurrency: int | None = None


@dataclass(frozen=True)
class Preset:
    """The four workloads of one preset."""

    name: str
    throughput: BenchLoad
    online: BenchLoad
    latency: BenchLoad
    latency_warmup: int
    sweep: tuple[BenchLoad, ...] = field(default_factory=tuple)


def _sweep(levels: tuple[int, ...], prompts_per_slot: int, minimum: int, length: int) -> tuple[BenchLoad, ...]:
    return tuple(BenchLoad(max(minimum, prompts_per_slot * c), length, length, c) for c in levels)


PRESETS = {
    # The guide's three workloads (section 5), and a sweep over the server's concurrency range.
    "guide": Preset("guide", throughput=BenchLoad(16, 200, 200), online=BenchLoad(100, 200, 200, 8),
                   latency=BenchLoad(10, 200, 200, 1), latency_warmup=2,
                   sweep=_sweep((1, 2, 4, 8, 16, 32), prompts_per_slot=4, minimum=16, length=200)),
    # The same shape, small enough for a test: a handful of prompts, 32/32 tokens.
    "quick": Preset("quick", throughput=BenchLoad(4, 32, 32), online=BenchLoad(8, 32, 32, 4),
                    latency=BenchLoad(3, 32, 32, 1), latency_warmup=1,
                    sweep=_sweep((1, 2, 4), prompts_per_slot=2, minimum=2, length=32)),
}

# The guide's NPU figures (section 5; Atlas 800 A2, 910B4, vLLM-Ascend 0.18.0rc1), by our metric keys.
GUIDE_FIGURES: dict[str, dict[str, Any]] = {
    "throughput": {"conditions": "16 prompts, input=200, output=200",
                   "requests_per_s": 0.99, "total_tokens_per_s": 1135.51, "output_tokens_per_s": 126.17},
    "online": {"conditions": "100 prompts, concurrency=8, input≈200, output≈200",
               "duration": 293.38, "request_throughput": 0.34, "output_token_throughput": 68.17,
               "total_token_throughput": 82.15, "mean_latency_ms": 22553.97},
    "latency": {"conditions": "batch=1, input≈200, output≈200, 10 iterations",
                "mean_total_ms": 22624.23, "median_total_ms": 22661.48, "p99_total_ms": 23253.73,
                "mean_ttft_ms": 6787.27, "mean_tpot_ms": 79.18},
}


class BenchFailed(UserError):
    """A `vllm bench` subprocess exited non-zero or wrote no result (exit status 1)."""


# --- commands -------------------------------------------------------------------------------

def engine_args(serve_argv: list[str]) -> list[str]:
    """The engine flags of the rendered server command, for the in-process benches.

    Drops the launcher (everything before the first flag) and the flags only the API
    server reads, with their values (entrypoint.engine_flags), so the offline engine runs
    with the server's dtype, max-model-len, eager mode, batch budget, seed...
    """
    server_only = server_only_options()
    first = next((i for i, word in enumerate(serve_argv) if word.startswith("--")), len(serve_argv))
    kept: list[str] = []
    dropping = False
    for word in serve_argv[first:]:
        if word.startswith("-"):
            dropping = word.split("=", 1)[0] in server_only
        if not dropping:
            kept.append(word)
    return kept


def shared_device_args(platform: str, server_memory_fraction: float) -> list[str]:
    """Engine flags that let an in-process bench start beside the running server on an accelerator.

    The server holds GPU_MEMORY_UTILIZATION of the device (0.90 by default); vLLM refuses
    to start an engine asking for more than is free, so the bench asks for half the rest
    (at least 5 %: a 270M model needs little). The CPU engine sizes its own KV cache.
    """
    if platform == "cpu":
        return []
    share = max(0.05, round((1 - server_memory_fraction) / 2, 2))
    return ["--gpu-memory-utilization", f"{share:.2f}"]


def throughput_command(load: BenchLoad, model_dir: Path, engine: list[str], out_json: Path) -> list[str]:
    """`vllm bench throughput` on the random dataset, fixed lengths; the seed is the engine's (the server's --seed)."""
    return [*VLLM_CLI, "bench", "throughput", "--model", str(model_dir), "--dataset-name", "random",
            "--random-input-len", str(load.input_len), "--random-output-len", str(load.output_len),
            "--random-range-ratio", "0", "--num-prompts", str(load.num_prompts), "--output-json", str(out_json),
            *engine]


def latency_command(load: BenchLoad, model_dir: Path, engine: list[str], out_json: Path, warmup: int) -> list[str]:
    """`vllm bench latency` at batch 1, one iteration per prompt of the load."""
    return [*VLLM_CLI, "bench", "latency", "--model", str(model_dir), "--batch-size", "1",
            "--input-len", str(load.input_len), "--output-len", str(load.output_len),
            "--num-iters", str(load.num_prompts), "--num-iters-warmup", str(warmup),
            "--output-json", str(out_json), *engine]


def serve_command(load: BenchLoad, url: str, served_name: str, tokenizer: Path, out_json: Path, seed: int,
                  warmups: int = 0) -> list[str]:
    """`vllm bench serve` against a running server: random prompts, EOS ignored, per-request details saved."""
    command = [*VLLM_CLI, "bench", "serve", "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
               "--model", served_name, "--tokenizer", str(tokenizer), "--dataset-name", "random",
               "--random-input-len", str(load.input_len), "--random-output-len", str(load.output_len),
               "--random-range-ratio", "0", "--ignore-eos", "--num-prompts", str(load.num_prompts),
               "--seed", str(seed), "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
               "--save-result", "--save-detailed", "--result-dir", str(out_json.parent),
               "--result-filename", out_json.name]
    if load.concurrency is not None:
        command += ["--max-concurrency", str(load.concurrency)]
    if warmups:
        command += ["--num-warmups", str(warmups)]
    return command


def bench_env(base: dict[str, str], api_key: str | None) -> dict[str, str]:
    """The environment of a bench subprocess; the ONE place the server's API key reaches vLLM's client.

    `vllm bench serve` sends `Authorization: Bearer $OPENAI_API_KEY` when that variable is set.
    """
    env = {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH", "")])),
           "PYTHONUNBUFFERED": "1"}
    if api_key:
        env["OPENAI_API_KEY"] = api_key
    return env


def run_bench(command: list[str], env: dict[str, str], log_path: Path) -> str:
    """Run one bench subprocess, its output passed through live (progress bars too) and kept in `log_path`."""
    chunks: list[bytes] = []
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None
        # raw chunks, not lines: tqdm redraws with \r, which a line reader would hold back
        while chunk := os.read(child.stdout.fileno(), 65536):
            chunks.append(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    output = b"".join(chunks).decode(errors="replace")
    log_path.write_text(output)
    if child.returncode != 0:
        raise BenchFailed(f"`vllm bench {command[len(VLLM_CLI) + 1]}` exited with {child.returncode}; "
                          f"its output is in {log_path}")
    return output


# --- parsing vLLM's results ----------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchFailed(f"vLLM wrote no readable result at {path}: {exc}") from None


def parse_throughput(result: dict[str, Any], output: str, load: BenchLoad) -> dict[str, Any]:
    """`bench throughput --output-json` (+ its printed output token count) -> the guide's 5.1 metrics."""
    elapsed = float(result["elapsed_time"])
    printed = re.search(r"Total num output tokens:\s*(\d+)", output)
    output_tokens = int(printed.group(1)) if printed else int(result["num_requests"]) * load.output_len
    return {"num_requests": result["num_requests"], "elapsed_s": elapsed,
            "requests_per_s": result["requests_per_second"], "total_tokens_per_s": result["tokens_per_second"],
            "output_tokens_per_s": output_tokens / elapsed, "total_num_tokens": result["total_num_tokens"],
            "output_tokens": output_tokens}


def per_request(result: dict[str, Any]) -> list[dict[str, float]]:
    """Per-request E2E, TTFT and TPOT (ms) of the successful requests of a `--save-detailed` serve result."""
    rows = []
    errors = result.get("errors") or [""] * len(result.get("latencies", []))
    for latency, ttft, out_len, error in zip(result.get("latencies", []), result.get("ttfts", []),
                                             result.get("output_lens", []), errors, strict=False):
        if error or not latency:
            continue
        tpot = (latency - ttft) / (out_len - 1) * 1000 if out_len > 1 else 0.0
        rows.append({"e2e_ms": latency * 1000, "ttft_ms": ttft * 1000, "tpot_ms": tpot})
    return rows


def parse_serve(result: dict[str, Any]) -> dict[str, Any]:
    """`bench serve --save-result --save-detailed` -> throughput, latency statistics and per-request latencies."""
    keys = ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
            "output_throughput", "total_token_throughput", "max_concurrency")
    summary = {key: result.get(key) for key in keys}
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std", "p50", "p90", "p99"):
            key = f"{stat}_{metric}_ms"
            if key in result:
                summary[key] = result[key]
    summary["requests"] = per_request(result)
    return summary


def parse_latency(result: dict[str, Any]) -> dict[str, Any]:
    """`bench latency --output-json` -> mean/median/p99 end-to-end ms of one batch-1 generation."""
    latencies = np.array(result["latencies"], dtype=float) * 1000
    return {"iterations": len(latencies), "mean_total_ms": float(np.mean(latencies)),
            "median_total_ms": float(np.median(latencies)), "p99_total_ms": float(np.percentile(latencies, 99)),
            "latencies_ms": latencies.tolist()}


# --- the guide's tables from our results ------------------------------------------------------

def online_metrics(serve: dict[str, Any]) -> dict[str, Any]:
    """A serve summary under the guide's 5.2 names."""
    return {"duration": serve["duration"], "request_throughput": serve["request_throughput"],
            "output_token_throughput": serve["output_throughput"],
            "total_token_throughput": serve["total_token_throughput"], "mean_latency_ms": serve.get("mean_e2el_ms")}


def latency_metrics(serve: dict[str, Any]) -> dict[str, Any]:
    """A concurrency-1 serve summary under the guide's 5.3 names."""
    return {"mean_total_ms": serve.get("mean_e2el_ms"), "median_total_ms": serve.get("median_e2el_ms"),
            "p99_total_ms": serve.get("p99_e2el_ms"), "mean_ttft_ms": serve.get("mean_ttft_ms"),
            "mean_tpot_ms": serve.get("mean_tpot_ms")}


@dataclass
class Runner:
    """Runs the workloads of one preset into one run folder; `raw/` keeps vLLM's own files and logs."""

    run_dir: Path
    env: dict[str, str]
    model_dir: Path
    engine: list[str]
    url: str
    served_name: str
    seed: int

    @property
    def raw(self) -> Path:
        path = self.run_dir / "raw"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def throughput(self, load: BenchLoad) -> dict[str, Any]:
        out = self.raw / "throughput.json"
        output = run_bench(throughput_command(load, self.model_dir, self.engine, out), self.env,
                           self.raw / "throughput.log")
        return {"load": load.__dict__, **parse_throughput(_read_json(out), output, load)}

    def serve(self, name: str, load: BenchLoad, warmups: int = 0) -> dict[str, Any]:
        out = self.raw / f"{name}.json"
        run_bench(serve_command(load, self.url, self.served_name, self.model_dir, out, self.seed, warmups),
                  self.env, self.raw / f"{name}.log")
        return {"load": load.__dict__, **parse_serve(_read_json(out))}

    def latency(self, load: BenchLoad, warmup: int) -> dict[str, Any]:
        out = self.raw / "latency-engine.json"
        run_bench(latency_command(load, self.model_dir, self.engine, out, warmup), self.env,
                  self.raw / "latency-engine.log")
        return {"load": load.__dict__, **parse_latency(_read_json(out))}
