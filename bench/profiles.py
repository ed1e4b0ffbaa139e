"""The CPU profiles on this machine, in one run: bare vLLM against the chosen profile and its alternates.

For each candidate the CPU command is rendered from the bundle's settings (fixture
weights, MODEL_PROFILE=gemma-3-270m-fixture) and started directly:

1. cold: with an empty compile cache of its own (COMPILE_CACHE_DIR = a fresh folder),
   timed from spawn to /health 200 and the model listed; stopped;
2. warm: the same command and cache again, timed the same way (vLLM loads the compiled
   graphs from the cache instead of compiling);
3. on the warm server, short presets of the guide's workloads with `vllm bench serve`:
   latency (c=1, 200 in / 200 out -> TTFT, TPOT) and online (c=8 -> output tok/s, TTFT).

Once per run: a memory-bandwidth probe (large array copy), the decode roofline of each
candidate (bandwidth / weight bytes per step vs 1000 / TPOT at c=1), and, unless
--no-decode-profile, a profile of one decode step of the chosen profile
(bench/decode_profile.py). Writes bench/results/profiles.{json,md,png}.

Run it under the heavy lock (about 25 minutes for the default candidates):
    flock /tmp/vllm-heavy.lock python bench/profiles.py [--candidates bare auto] [--c1-prompts 5] [--c8-prompts 16]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    cpu_facts,
    cpu_fixture,
    server,
    wait_vllm,
    write_report,
)
from bench.start_phases import ENGINE_INIT  # noqa: E402
from entrypoint.render import ServeCommand, render_command  # noqa: E402
from entrypoint.resolver import load_settings  # noqa: E402
from entrypoint.settings import Settings, inherited_environment  # noqa: E402
from testbed.fixture import fixture_weights  # noqa: E402
from testbed.net import free_port  # noqa: E402
from verification.perf import BenchLoad, bench_env, engine_args, parse_serve, run_bench, serve_command  # noqa: E402
from verification.roofline import decode_bytes_per_step, measure_copy_bandwidth_gbps, served_dtype  # noqa: E402

# name -> (what it is, the settings it adds to the common ones)
CANDIDATES: dict[str, tuple[str, dict[str, str]]] = {
    "bare": ("bare vLLM with the guide's flags: CPU_TUNING=off, vLLM's defaults (checkpoint dtype = bf16, "
             "auto OpenMP binding with one core reserved, AOT compile artifact)", {"CPU_TUNING": "off"}),
    "auto": ("the chosen CPU profile, what `make up` renders on this machine", {}),
    # vLLM 0.32 + torch 2.13 on CPU: the warm start fails to load its AOT artifact
    # ("'function' object has no attribute 'finalize_loading'") and compiles again.
    "auto-aot": ("the chosen profile with vLLM's default AOT compile artifact (VLLM_USE_AOT_COMPILE=true), "
                 "the profile's only difference from it", {"VLLM_USE_AOT_COMPILE": "true"}),
    "auto-eager": ("the chosen profile without torch.compile (ENFORCE_EAGER=true): the floor of any warm start",
                   {"ENFORCE_EAGER": "true"}),
    # One of these two is the chosen dtype on any CPU; that one renders auto's command and is skipped.
    "auto-bfloat16": ("the chosen profile in bfloat16 (DTYPE=bfloat16)", {"DTYPE": "bfloat16"}),
    "auto-float32": ("the chosen profile in float32 (DTYPE=float32)", {"DTYPE": "float32"}),
}
WARM_ALTERNATES = ("auto-aot",)  # candidates whose warm start is compared with the chosen profile's
BASELINE, CHOSEN = "bare", "auto"
TARGETS = {"c8_throughput_ratio": 2.0, "c1_ttft_ratio": 3.0, "warm_speedup": 3.0, "roofline_fraction": 0.8}
SERVE_METRICS = ("completed", "failed", "duration", "output_throughput", "mean_ttft_ms", "median_ttft_ms",
                 "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "mean_itl_ms", "mean_e2el_ms")
STAMP = r"\d\d-\d\d (\d\d):(\d\d):(\d\d)"
WARMUP_START = re.compile(STAMP + r".*Warming up model for the compilation")
WARMUP_DONE = re.compile(STAMP + r".*Warming up done")
CACHE_HIT = ("Directly load AOT compilation", "irectly load the compiled graph")
AOT_SAVED = "saved AOT compiled function"
CACHE_MISS = re.compile(r"Compiling model again due to a load failure .*reason: (.*)")


def progress(message: str) -> None:
    print(f"[profiles {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- measuring ------------------------------------------------------------------------------------

def compile_evidence(log: Path) -> dict[str, Any]:
    """What vLLM's log says about compiling: seconds spent compiling, or that it loaded cached graphs."""
    text = log.read_text(errors="replace")
    miss = CACHE_MISS.search(text)
    start, done, init = WARMUP_START.search(text), WARMUP_DONE.search(text), ENGINE_INIT.search(text)
    return {"compile_s": _seconds(done) - _seconds(start) if start and done else None,
            "engine_init_s": float(init.group(1)) if init else None,
            "loaded_from_cache": any(hit in text for hit in CACHE_HIT),
            "cache_load_failure": miss.group(1).strip()[:200] if miss else None,
            "aot_artifact": "saved" if AOT_SAVED in text else "none"}


PHASES = (("args", re.compile(STAMP + r".*non-default args")),
          ("engine", re.compile(STAMP + r".*Initializing a V1 LLM engine")),
          ("load", re.compile(STAMP + r".*Starting to load model")),
          ("initialised", re.compile(STAMP + r".*init engine \(")))


def startup_phases(log: Path, ready_s: float) -> dict[str, float] | None:
    """A start split by vLLM's log lines (1 s resolution): the API server's imports and the rest of its
    start, the engine-core process start, the worker's start, weights + compile/warm-up + KV cache."""
    if not log.exists():
        return None
    text = log.read_text(errors="replace")
    stamps = {name: _seconds(m) for name, rx in PHASES if (m := rx.search(text))}
    if len(stamps) < len(PHASES):
        return None
    return {"engine_core_start_s": stamps["engine"] - stamps["args"],
            "worker_start_s": stamps["load"] - stamps["engine"],
            "weights_compile_warmup_s": stamps["initialised"] - stamps["load"],
            "api_server_rest_s": round(ready_s - (stamps["initialised"] - stamps["args"]), 1)}


def add_phases(result: dict[str, Any]) -> None:
    """Startup phases of every start from the run's kept logs, where they still exist."""
    for row in result["candidates"]:
        for start in ("cold", "warm"):
            phases = startup_phases(Path(result["logs"]) / row["name"] / f"{start}.log", row[f"ready_{start}_s"])
            if phases:
                row[f"{start}_phases"] = phases


def _seconds(match: re.Match) -> int:
    hours, minutes, seconds = (int(g) for g in match.groups()[:3])
    return hours * 3600 + minutes * 60 + seconds


def serve_bench(load: BenchLoad, url: str, name: str, model_path: Path, out: Path) -> dict[str, Any]:
    """One `vllm bench serve` run (one warm-up request first); its summary metrics."""
    command = serve_command(load, url, name, model_path, out, seed=0, warmups=1)
    run_bench(command, bench_env(inherited_environment(), None), out.with_suffix(".log"))
    summary = parse_serve(json.loads(out.read_text()))
    return {key: summary.get(key) for key in SERVE_METRICS}


def candidate_command(name: str, common: dict[str, str], model_path: Path, cache: str, port: str
                      ) -> tuple[Settings, ServeCommand]:
    """A candidate's settings and its rendered command."""
    settings = load_settings({**common, **CANDIDATES[name][1], "COMPILE_CACHE_DIR": cache, "PORT": port})
    return settings, render_command(settings, str(model_path))


def rendered(name: str, common: dict[str, str], model_path: Path) -> tuple[tuple[str, ...], tuple]:
    """A candidate's command and env with the per-run parts fixed: equal for candidates that serve the same way."""
    _, command = candidate_command(name, common, model_path, "/compile-cache", "8000")
    return tuple(command.argv), tuple(sorted(command.env.items()))


def distinct(names: list[str], starts_as: Callable[[str], Hashable]) -> list[str]:
    """The candidates in order, leaving out each one that starts as an earlier one does (equal
    `starts_as`: the rendered command and env, say), as a lever that is already the default."""
    seen: dict[Hashable, str] = {}
    for name in names:
        key = starts_as(name)
        if key in seen:
            progress(f"{name}: starts as {seen[key]} does on this machine; skipped")
        else:
            seen[key] = name
    return list(seen.values())


def measure(name: str, common: dict[str, str], model_path: Path, workdir: Path, loads: dict[str, BenchLoad]
            ) -> dict[str, Any]:
    """Cold start, warm start, then the workloads on the warm server."""
    folder = workdir / name
    folder.mkdir(parents=True)
    settings, command = candidate_command(name, common, model_path, str(folder / "compile-cache"), str(free_port()))
    env = {**inherited_environment(), **command.env}
    shown = {k: v for k, v in command.env.items() if k.startswith("VLLM_") and k != "VLLM_CACHE_ROOT"}
    url, served = settings.base_url, settings.served_model_name
    loads_by_start = {"cold": {}, "warm": loads}  # the workloads run on the warm server only
    row: dict[str, Any] = {"name": name, "description": CANDIDATES[name][0], "settings": CANDIDATES[name][1],
                           "dtype": served_dtype(settings.dtype, model_path), "argv": command.argv[1:],
                           "env": shown}
    for start in ("cold", "warm"):
        progress(f"{name}: {start} start")
        log, started = folder / f"{start}.log", time.monotonic()
        with server(command.argv, env, log) as child:
            wait_vllm(settings, child, log, poll=0.25)
            seconds = time.monotonic() - started
            row[f"ready_{start}_s"] = round(seconds, 1)
            progress(f"{name}: {start} ready in {seconds:.1f} s")
            for key, load in loads_by_start[start].items():
                progress(f"{name}: bench serve {key} ({load.num_prompts} prompts)")
                row[key] = serve_bench(load, url, served, model_path, folder / f"{key}.json")
        row[f"{start}_log"] = compile_evidence(folder / f"{start}.log")
    row["_cache"], row["_env"] = str(folder / "compile-cache"), command.env
    return row


def decode_profile(row: dict[str, Any], model_path: Path, workdir: Path) -> dict[str, Any] | None:
    """Profile one decode step of this candidate's engine in-process (bench/decode_profile.py)."""
    common_env = {**inherited_environment(), **row["_env"]}
    out = workdir / "decode-profile.json"
    log = workdir / "decode-profile.log"
    flags = engine_args(["vllm.entrypoints.openai.api_server", *row["argv"][2:]])
    command = [sys.executable, str(ROOT / "bench" / "decode_profile.py"), "--model", str(model_path),
               "--dtype", row["dtype"], "--out", str(out), "--", *flags]
    progress(f"decode profile of {row['name']} (log {log})")
    with log.open("wb") as sink:
        done = subprocess.run(command, env=common_env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        progress(f"decode profile failed ({done.returncode}); see {log}")
        return None
    return json.loads(out.read_text())


# --- analysis (pure) ------------------------------------------------------------------------------

def verdict(value: float | None, target: float) -> str:
    return "n/a" if value is None else "PASS" if value >= target else "NOT MET"


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def roofline_fraction(tpot_ms: float | None, bandwidth_gbps: float, bytes_per_step: int) -> dict[str, Any]:
    """The decode roofline at batch 1: bound tokens/s = bandwidth / bytes per step; measured = 1000 / TPOT."""
    bound = bandwidth_gbps * 1e9 / bytes_per_step
    measured = 1000 / tpot_ms if tpot_ms else None
    return {"bytes_per_step": bytes_per_step, "bound_tokens_per_s": bound, "bound_step_ms": 1000 / bound,
            "measured_tokens_per_s": measured, "fraction": measured / bound if measured else None}


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the issue's targets, from the recorded measurements."""
    rows = {row["name"]: row for row in result["candidates"]}
    analysis: dict[str, Any] = {"roofline": {}, "warm_speedup": {}}
    for name, row in rows.items():
        analysis["roofline"][name] = roofline_fraction(row["c1"].get("mean_tpot_ms"), result["bandwidth_gbps"],
                                                       row["bytes_per_step"])
        analysis["warm_speedup"][name] = _ratio(row["ready_cold_s"], row["ready_warm_s"])
    chosen, base = rows.get(CHOSEN), rows.get(BASELINE)
    checks = []
    if chosen and base:
        checks += [
            {"check": "c=8 output throughput, auto / bare", "target": TARGETS["c8_throughput_ratio"],
             "value": _ratio(chosen["c8"]["output_throughput"], base["c8"]["output_throughput"])},
            {"check": "c=1 TTFT, bare / auto", "target": TARGETS["c1_ttft_ratio"],
             "value": _ratio(base["c1"]["mean_ttft_ms"], chosen["c1"]["mean_ttft_ms"])},
        ]
    if chosen:
        checks += [
            {"check": "time to ready, cold / warm (auto)", "target": TARGETS["warm_speedup"],
             "value": analysis["warm_speedup"][CHOSEN]},
            {"check": "decode roofline fraction (auto, c=1)", "target": TARGETS["roofline_fraction"],
             "value": analysis["roofline"][CHOSEN]["fraction"]},
        ]
    checks += [{"check": f"time to ready, cold / warm ({name})", "target": TARGETS["warm_speedup"],
                "value": analysis["warm_speedup"][name]} for name in WARM_ALTERNATES if name in rows]
    for check in checks:
        check["verdict"] = verdict(check["value"], check["target"])
    analysis["checks"] = checks
    return analysis


def time_split(result: dict[str, Any]) -> dict[str, float] | None:
    """One decode step of the chosen profile at c=1, split so the parts add up to the served TPOT.

    GEMM is vLLM's own matmul kernels' self time per token from the profile; the engine's
    step is the unprofiled in-process step time; the rest of the served TPOT is the process
    layout (HTTP server, engine core in another process, detokenising, streaming).
    """
    profile = result.get("decode_profile")
    roof = result["analysis"]["roofline"].get(CHOSEN)
    chosen = next((r for r in result["candidates"] if r["name"] == CHOSEN), None)
    if not profile or not roof or not chosen or not chosen["c1"].get("mean_tpot_ms"):
        return None
    engine = profile["engine"]
    # the better of the one-thread probe and a copy on all the engine's threads: the bound the kernels face
    reference = max(result["bandwidth_gbps"], profile["kernel_floor"].get("torch_copy_gbps") or 0.0)
    bound_ms = roof["bytes_per_step"] / reference / 1e6
    gemm_ms = engine["groups_ms"].get("gemm", 0.0) / engine["ops_per_token"]
    step_ms, tpot = engine["decode_step_ms"], chosen["c1"]["mean_tpot_ms"]
    return {"reference_gbps": reference, "bandwidth_bound_ms": bound_ms, "gemm_ms": gemm_ms,
            "gemm_above_bound_ms": gemm_ms - bound_ms,
            "gemm_bandwidth_gbps": roof["bytes_per_step"] / gemm_ms / 1e6 if gemm_ms else 0.0,
            "engine_outside_gemm_ms": step_ms - gemm_ms, "engine_step_ms": step_ms,
            "server_layout_ms": tpot - step_ms, "tpot_ms": tpot}


# --- report ---------------------------------------------------------------------------------------

def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def candidate_table(result: dict[str, Any]) -> list[str]:
    roof = result["analysis"]["roofline"]
    lines = ["| candidate | dtype | ready cold (s) | ready warm (s) | cold / warm | c=1 TTFT ms | c=1 TPOT ms "
             "| c=8 TTFT ms | c=8 TPOT ms | c=8 out tok/s | roofline |", "|---" * 11 + "|"]
    for row in result["candidates"]:
        c1, c8 = row["c1"], row["c8"]
        speedup = result["analysis"]["warm_speedup"][row["name"]]
        lines.append(f"| {row['name']} | {row['dtype']} | {row['ready_cold_s']} | {row['ready_warm_s']} "
                     f"| {_f(speedup, 2)}x "
                     f"| {_f(c1['mean_ttft_ms'])} | {_f(c1['mean_tpot_ms'], 1)} | {_f(c8['mean_ttft_ms'])} "
                     f"| {_f(c8['mean_tpot_ms'], 1)} | {_f(c8['output_throughput'], 1)} "
                     f"| {_f(100 * (roof[row['name']]['fraction'] or 0))}% |")
    return lines


def checks_table(result: dict[str, Any]) -> list[str]:
    lines = ["| check | measured | target | verdict |", "|---|---|---|---|"]
    for check in result["analysis"]["checks"]:
        percent = "roofline" in check["check"]
        value = f"{100 * check['value']:.0f}%" if percent and check["value"] else f"{_f(check['value'], 2)}x"
        target = f"{100 * check['target']:.0f}%" if percent else f">= {check['target']:.0f}x"
        lines.append(f"| {check['check']} | {value} | {target} | **{check['verdict']}** |")
    return lines


def why_not_met(result: dict[str, Any]) -> list[str]:
    """The measured reason the auto/bare targets are not met, when they are not."""
    checks = {c["check"]: c for c in result["analysis"]["checks"]}
    missed = [c for name, c in checks.items()
              if ("auto / bare" in name or "bare / auto" in name) and c["verdict"] == "NOT MET"]
    if not missed:
        return []
    rows = {r["name"]: r for r in result["candidates"]}
    bare, chosen = rows[BASELINE], rows[CHOSEN]
    native = "avx512_bf16" in result["machine"]["flags"] or "amx_bf16" in result["machine"]["flags"]
    lines = ["", "### Why the auto/bare targets are not met here", ""]
    if native and bare["dtype"] == chosen["dtype"]:
        lines.append(
            "The 2x / 3x targets come from an AVX2-only EPYC (issue 8), where bare vLLM serves the bf16 "
            "checkpoint in bf16 *without* native bf16 compute and float32 was measured 6x faster to the first "
            "token: there the profile's dtype choice alone is worth the targets. This CPU has "
            f"{', '.join(result['machine']['flags'])}: bare vLLM already computes the checkpoint's bf16 "
            "natively, so the profile chooses the same dtype and the dtype gain is 1x.")
        if "auto-float32" in rows:
            f32 = rows["auto-float32"]
            lines.append(f"In this run float32 (the AVX2 machine's winner) is *slower* here: c=8 "
                         f"{_f(f32['c8']['output_throughput'], 1)} tok/s, c=1 TTFT {_f(f32['c1']['mean_ttft_ms'])} "
                         "ms.")
    lines.append(
        "What remains for the profile on 2 cores is the thread binding: bare vLLM's auto binding runs one "
        "OpenMP thread and keeps the other core for the API server; the profile binds both. That is the "
        "measured c=8 and c=1 TTFT gain above beyond the dtype's.")
    return lines


def warm_line(name: str, row: dict[str, Any], speedup: float | None) -> str:
    """One candidate's warm start: what happened to its compiled graph, and the times."""
    cold, warm = row["cold_log"], row["warm_log"]
    if warm["loaded_from_cache"]:
        what = "loaded its compiled graph (the AOT artifact) from the cache"
    elif warm.get("cache_load_failure"):
        what = (f"found its AOT artifact but could not load it (\"{warm['cache_load_failure']}\") and compiled "
                "again")
    elif cold.get("aot_artifact") == "none" and cold.get("compile_s") is not None:
        what = ("keeps no AOT artifact: Dynamo traced again and Inductor's kernel cache on the cache volume "
                "(TORCHINDUCTOR_CACHE_DIR) was reused")
    else:
        what = "compiles nothing"
    span = (f"compile + warm-up {_f(warm['compile_s'])} s against {_f(cold['compile_s'])} s cold; "
            if cold.get("compile_s") is not None else "")
    return (f"- **{name}** {what}: {span}ready in {row['ready_warm_s']} s against {row['ready_cold_s']} s cold "
            f"({_f(speedup, 2)}x).")


def floor_note(eager: dict[str, Any]) -> str:
    """Where the eager start's time goes, from its phases: mostly processes starting, not the model."""
    start = "warm" if eager["ready_warm_s"] <= eager["ready_cold_s"] else "cold"
    phases = eager.get(f"{start}_phases")
    if not phases:
        return ""
    spawns = phases["engine_core_start_s"] + phases["worker_start_s"]
    return (f" Of its {eager[f'ready_{start}_s']} s, {spawns} s are the engine-core and worker processes "
            f"starting (spawn, imports of torch and vLLM), {phases['api_server_rest_s']} s the API server's own "
            f"imports and start and the readiness poll, and only {phases['weights_compile_warmup_s']} s loading "
            "the weights, the warm-up batch and the KV cache: vLLM's CPU process layout, not the cache, sets "
            "the floor.")


def warm_section(result: dict[str, Any]) -> list[str]:
    """What the warm restarts show: whether vLLM reused its compiled graph, and the floor of a start."""
    rows = {r["name"]: r for r in result["candidates"]}
    chosen = rows.get(CHOSEN)
    if not chosen:
        return []
    speedup = result["analysis"]["warm_speedup"]
    lines = ["", "## Warm restarts", "", "The compile cache lives under COMPILE_CACHE_DIR (default: on the model "
             "cache volume); each candidate's warm start reuses its own cold start's cache:", ""]
    lines += [warm_line(name, rows[name], speedup[name]) for name in (CHOSEN, *WARM_ALTERNATES, BASELINE)
              if name in rows]
    eager = rows.get("auto-eager")
    if eager:
        best = min(eager["ready_cold_s"], eager["ready_warm_s"])
        most = chosen["ready_cold_s"] / best
        lines += ["", f"A start that compiles nothing at all (auto-eager) is ready in {best} s; that is the floor of "
                  f"any warm start, so even a start that skipped all compilation could be at most {most:.2f}x "
                  "faster than the chosen profile's cold start here"
                  + (f", short of the {TARGETS['warm_speedup']:.0f}x target" if most < TARGETS["warm_speedup"]
                     else "") + "." + floor_note(eager)]
    phased = [r for r in result["candidates"] if r.get("cold_phases")]
    if phased:
        lines += ["", "Startup phases from vLLM's log (1 s resolution): the engine-core process start (spawn, "
                  "imports), the worker's start, weights + compile/warm-up + KV cache, and the rest (interpreter "
                  "and vLLM imports before the API server's first line, the API server's start after the engine, "
                  "the readiness poll):", "",
                  "| start | engine-core start | worker start | weights + compile + warm-up | rest | ready (s) |",
                  "|---|---|---|---|---|---|"]
        for r in phased:
            for start in ("cold", "warm"):
                ph = r.get(f"{start}_phases")
                if ph:
                    lines.append(f"| {r['name']} {start} | {ph['engine_core_start_s']} | {ph['worker_start_s']} "
                                 f"| {ph['weights_compile_warmup_s']} | {ph['api_server_rest_s']} "
                                 f"| {r[f'ready_{start}_s']} |")
    return lines


def profile_section(result: dict[str, Any]) -> list[str]:
    profile, split = result.get("decode_profile"), time_split(result)
    if not profile or not split:
        return []
    floor, engine = profile["kernel_floor"], profile["engine"]
    tokens = engine["ops_per_token"]
    bytes_mb = result["analysis"]["roofline"][CHOSEN]["bytes_per_step"] / 1e6
    lines = ["", "## Where the time of one decode step goes (auto, batch 1)", "",
             f"- Bandwidth bound: {_f(split['bandwidth_bound_ms'], 1)} ms per step ({bytes_mb:.0f} MB of weights "
             f"per step at {_f(split['reference_gbps'], 1)} GB/s, the better of the one-thread copy probe, "
             f"{_f(result['bandwidth_gbps'], 1)} GB/s, and a copy on all the engine's threads, "
             f"{_f(floor.get('torch_copy_gbps'), 1)} GB/s).",
             *threads_note(result, floor),
             f"- vLLM's matmul kernels (profiled GEMM self time per token): {_f(split['gemm_ms'], 1)} ms = "
             f"{_f(split['gemm_bandwidth_gbps'], 1)} GB/s of weights, "
             f"{_f(100 * split['gemm_bandwidth_gbps'] / split['reference_gbps'])}% of that bandwidth.",
             f"- For comparison, torch's generic `F.linear` over the same {floor['matrices']} weight matrices at "
             f"batch 1 ({floor['dtype']}, {floor['threads']} threads): {_f(floor['pass_ms'], 1)} ms per pass = "
             f"{_f(floor['bandwidth_gbps'], 1)} GB/s ("
             + ("vLLM's own kernels do better)." if split["gemm_bandwidth_gbps"] > floor["bandwidth_gbps"]
                else "as fast as vLLM's own kernels or faster)."),
             f"- vLLM engine in-process (`vllm.LLM`, engine core in the same process, no HTTP): "
             f"{_f(split['engine_step_ms'], 1)} ms per decode step at ~200 tokens of context (prefill of 200 "
             f"tokens {_f(engine['prefill_ms'])} ms): "
             f"{_f(100 * split['bandwidth_bound_ms'] / split['engine_step_ms'])}% of the roofline.",
             f"- Served (HTTP, engine core in its own process), c=1 TPOT: {_f(split['tpot_ms'], 1)} ms.", "",
             "| part of one served decode step (c=1) | ms | share |", "|---|---|---|"]
    parts = [("weight traffic at that bandwidth (the roofline)", split["bandwidth_bound_ms"]),
             ("matmul kernels beyond the bandwidth bound", split["gemm_above_bound_ms"]),
             ("engine outside the matmuls (attention, KV update, sampling, graph glue, Python, scheduler)",
              split["engine_outside_gemm_ms"]),
             ("server process layout (HTTP, IPC to the engine-core process, detokenise, stream)",
              split["server_layout_ms"])]
    for label, ms in parts:
        lines.append(f"| {label} | {_f(ms, 1)} | {_f(100 * ms / split['tpot_ms'])}% |")
    lines += ["", f"torch.profiler (CPU), in-process, one generation of 1 prefill + {engine['steps']} decode "
              f"steps: {_f(engine['profiled_wall_ms'])} ms wall, {_f(engine['profiled_op_self_ms'])} ms inside "
              f"operators. Self CPU time by group, per token ({tokens} tokens, the prefill included):", "",
              "| group | ms per token |", "|---|---|"]
    lines += [f"| {group} | {_f(ms / tokens, 2)} |" for group, ms in engine["groups_ms"].items()]
    lines += [f"| (no operator: Python, scheduler, profiler) | "
              f"{_f((engine['profiled_wall_ms'] - engine['profiled_op_self_ms']) / tokens, 2)} |",
              "", "Top operators by self CPU time:", "", "| operator | group | calls | self ms |", "|---|---|---|---|"]
    lines += [f"| `{op['name'][:60]}` | {op['group']} | {op['calls']} | {_f(op['self_ms'], 1)} |"
              for op in engine["top_ops"]]
    lines += ["", "**Conclusion:** " + conclusion(split, split["reference_gbps"])]
    return lines


def threads_note(result: dict[str, Any], floor: dict[str, Any]) -> list[str]:
    """The roofline again with the copy bandwidth of all the engine's threads, when that is higher (>10 %)."""
    copy_gbps, probe = floor.get("torch_copy_gbps"), result["bandwidth_gbps"]
    if not copy_gbps or copy_gbps <= 1.1 * probe:
        return []
    roof = roofline_fraction(next(r for r in result["candidates"] if r["name"] == CHOSEN)["c1"]["mean_tpot_ms"],
                             copy_gbps, result["analysis"]["roofline"][CHOSEN]["bytes_per_step"])
    return [f"- The headline roofline fraction uses the one-thread probe; against the {copy_gbps:.1f} GB/s of "
            f"all the engine's threads the served c=1 decode reaches {100 * (roof['fraction'] or 0):.0f}% of the "
            "bound."]


def conclusion(split: dict[str, float], bandwidth_gbps: float) -> str:
    """Where the gap between the roofline and the served step is, in plain words."""
    gaps = {"the matmul kernels": split["gemm_above_bound_ms"],
            "the engine's work outside the matmuls (attention, KV update, sampling, Python, scheduler)":
            split["engine_outside_gemm_ms"],
            "the process layout (HTTP server and the engine core in a separate process: IPC, detokenising, "
            "streaming)": split["server_layout_ms"]}
    worst = max(gaps, key=lambda k: gaps[k])
    total = split["tpot_ms"] - split["bandwidth_bound_ms"]
    kernels = 100 * split["gemm_bandwidth_gbps"] / bandwidth_gbps
    return (f"the served step is {_f(total, 1)} ms above the bandwidth bound; the largest part "
            f"({_f(gaps[worst], 1)} ms) is {worst}. vLLM's matmul kernels stream the weights at {kernels:.0f}% "
            "of that bandwidth. No setting of the bundle moves the "
            "rest: the chosen profile already uses every core and the faster dtype of this CPU; the gap is in "
            "vLLM's per-step work around the kernels and its process layout.")


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    loads = result["loads"]
    lines = ["# CPU profiles on this machine: bare vLLM vs the chosen profile (one run)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, flags "
             f"{', '.join(machine['flags'])}; vLLM {result['vllm']}; Gemma 3 270M fixture weights (bf16 "
             f"checkpoint); run {result['started']} - {result['finished']} UTC, one server at a time.", "",
             f"Workloads (short presets of the guide's, `vllm bench serve`, random {loads['c1']['input_len']} in / "
             f"{loads['c1']['output_len']} out, EOS ignored, one warm-up request each): latency c=1 with "
             f"{loads['c1']['num_prompts']} prompts, online c=8 with {loads['c8']['num_prompts']} prompts. "
             "*Ready*: spawn to /health 200 with the model listed; cold = empty compile cache of its own, "
             "warm = the same command restarted on that cache (the weights are in the page cache both times). "
             f"Memory bandwidth (copy, read + write): {_f(result['bandwidth_gbps'], 1)} GB/s. Roofline = "
             "(1000 / c=1 TPOT) / (bandwidth / weight bytes per step).", "", "Candidates:", ""]
    lines += [f"- **{row['name']}**: {row['description']}; env {row['env'] or '{}'}" for row in result["candidates"]]
    lines += ["", *candidate_table(result), "", "## Against the targets (issue 8)", "", *checks_table(result)]
    lines += why_not_met(result)
    lines += ["", "Compile evidence from the logs (compile = vLLM's \"warming up model for the compilation\" "
              "span; whether the warm start loaded its compiled graph):", ""]
    lines += [f"- {row['name']}: cold compile {_f(row['cold_log']['compile_s'], 1)} s; warm loaded from cache: "
              f"{row['warm_log']['loaded_from_cache']} (warm compile {_f(row['warm_log']['compile_s'], 1)} s)"
              + (f"; vLLM: \"{row['warm_log']['cache_load_failure']}\"" if row["warm_log"].get("cache_load_failure")
                 else "")
              for row in result["candidates"]]
    lines += warm_section(result)
    lines += profile_section(result)
    if result.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in result["notes"])]
    lines += ["", "Reproduce: `flock /tmp/vllm-heavy.lock make bench-profiles` (= `python bench/profiles.py`).", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Grouped bars per candidate: c=8 output tok/s, c=1 TTFT, c=1 TPOT; and cold/warm time to ready."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["candidates"]
    names = [r["name"] for r in rows]
    panels = [("c=8 output tok/s (higher is better)", [[r["c8"]["output_throughput"] or 0 for r in rows]], [""]),
              ("c=1 latency, ms (lower is better)", [[r["c1"]["mean_ttft_ms"] or 0 for r in rows],
                                                     [r["c1"]["mean_tpot_ms"] or 0 for r in rows]], ["TTFT", "TPOT"]),
              ("time to ready, s (lower is better)", [[r["ready_cold_s"] for r in rows],
                                                      [r["ready_warm_s"] for r in rows]], ["cold", "warm"])]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for axis, (title, series, labels) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for index, (values, label) in enumerate(zip(series, labels, strict=True)):
            xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(names))]
            bars = axis.bar(xs, values, width, label=label or None)
            axis.bar_label(bars, fmt="%.0f", fontsize=8)
        axis.set_xticks(range(len(names)), names, rotation=15)
        axis.set_title(title, fontsize=10)
        if any(labels):
            axis.legend(fontsize=8)
    figure.suptitle(f"CPU profiles, {result['machine']['cpu']}, {result['machine']['cores']} cores", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- main -----------------------------------------------------------------------------------------

def run_arguments(parser: argparse.ArgumentParser, names: list[str], default: list[str], report: str) -> None:
    """The options every candidate bench here shares: which candidates, the load presets, the report."""
    parser.add_argument("--candidates", nargs="+", default=default, metavar="NAME",
                        help=f"which to run, in this order, from: {', '.join(names)}")
    parser.add_argument("--c1-prompts", type=int, default=5, help="prompts of the c=1 latency preset")
    parser.add_argument("--c8-prompts", type=int, default=16, help="prompts of the c=8 online preset")
    parser.add_argument("--length", type=int, default=200, help="input and output tokens per prompt")
    parser.add_argument("--name", default=report, help="report name under bench/results")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes (with --render)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only rewrite the report from a recorded result (a run's partial.json or report JSON)")


def known_candidates(parser: argparse.ArgumentParser, args: argparse.Namespace, names: list[str]) -> None:
    """Exit 2 with one line when --candidates names one that does not exist."""
    unknown = [c for c in args.candidates if c not in names]
    if unknown:
        parser.exit(2, f"--candidates: unknown {', '.join(unknown)}; allowed: {', '.join(names)}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_arguments(parser, list(CANDIDATES), list(CANDIDATES), "profiles")
    parser.add_argument("--no-decode-profile", action="store_true", help="skip the profile of one decode step")
    parser.add_argument("--model-path", default="")
    args = parser.parse_args(argv)
    known_candidates(parser, args, list(CANDIDATES))
    return args


def save_partial(result: dict[str, Any], workdir: Path) -> None:
    """What is measured so far, so a late failure loses no measurement (`--render` rewrites the report)."""
    public = {**result, "candidates": [{k: v for k, v in r.items() if not k.startswith("_")}
                                       for r in result["candidates"]]}
    (workdir / "partial.json").write_text(json.dumps(public, indent=2) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import vllm

    model_path = Path(args.model_path or fixture_weights())
    workdir = Path(tempfile.mkdtemp(prefix="bench-profiles-"))  # kept: the logs explain a failed run
    progress(f"logs in {workdir}")
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    bandwidth = measure_copy_bandwidth_gbps(seconds=3.0)
    progress(f"memory bandwidth {bandwidth:.1f} GB/s")
    common = cpu_fixture(model_path)
    loads = {"c1": BenchLoad(args.c1_prompts, args.length, args.length, 1),
             "c8": BenchLoad(args.c8_prompts, args.length, args.length, 8)}
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"machine": cpu_facts(), "vllm": vllm.__version__, "started": started,
                              "bandwidth_gbps": bandwidth, "loads": {k: v.__dict__ for k, v in loads.items()},
                              "targets": TARGETS, "candidates": rows, "logs": str(workdir)}
    for name in distinct(args.candidates, lambda name: rendered(name, common, model_path)):
        row = measure(name, common, model_path, workdir, loads)
        row["bytes_per_step"] = decode_bytes_per_step(model_path, row["dtype"])
        rows.append(row)
        save_partial(result, workdir)
    chosen = next((r for r in rows if r["name"] == CHOSEN), None)
    if chosen and not args.no_decode_profile:
        result["decode_profile"] = decode_profile(chosen, model_path, workdir)
        save_partial(result, workdir)
    for row in rows:
        row.pop("_env")
        shutil.rmtree(row.pop("_cache"), ignore_errors=True)
    result["finished"] = time.strftime("%H:%M", time.gmtime())
    add_phases(result)
    result["analysis"] = analyse(result)
    return result


def main() -> None:
    args = parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        result.setdefault("finished", time.strftime("%H:%M", time.gmtime()))
        add_phases(result)
        result["notes"] = [*result.get("notes", []), *args.note]
        result["analysis"] = analyse(result)
    else:
        result = run(args)
    write_report(args.name, result, markdown(result))
    plot(result, RESULTS / f"{args.name}.png")
    progress(f"wrote {RESULTS / args.name}.json, .md, .png")


if __name__ == "__main__":
    main()
