"""bench/start.py's report: the table against today's default, the phases of every start, the AVX2
estimate from the phases, the import profile and what vLLM 0.32's source rules out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.start_phases import describe

ROOT = Path(__file__).resolve().parents[1]
AVX2_RESULTS = ROOT / "bench" / "results" / "profiles.json"  # the 2-core AVX2 EPYC run the targets are set on
BASELINE = "auto"
TARGETS = {"warm_s": 30.0, "cold_s": 90.0}
LOSS_TOLERANCE = 0.05  # short presets: differences under ~5-10 % are noise (bench/results/profiles.md)
# bench/profiles.py's four phases (1 s resolution) as sums of this bench's finer ones
GROUPS = {
    "engine_core_start_s": ("api_config", "engine_import"),
    "worker_start_s": ("worker_import", "worker_init"),
    "weights_compile_warmup_s": ("weights", "dynamo_trace", "inductor", "dummy_run", "kv_cache"),
    "api_server_rest_s": ("api_import", "engine_handoff", "api_state", "api_finish"),
}
VLLM = "vllm 0.32.0 (site-packages/vllm)"
SOURCE_FACTS = [
    "**fork against spawn is not a switch on the CPU**: `platforms/cpu.py:409` "
    "(`CpuPlatform.check_and_update_config`) sets `os.environ[\"VLLM_WORKER_MULTIPROC_METHOD\"] = \"spawn\"` "
    "unconditionally, in the API server before it starts the engine core, so every engine-core and worker "
    "process is a fresh interpreter importing torch and vLLM again; a start with fork cannot be measured "
    "without patching vLLM. What can be measured is one process fewer (two-process).",
    "**the process layout**: `platforms/cpu.py:334-341` turns the default `uni` executor into `mp` (a separate "
    "worker process) unless `VLLM_ENABLE_V1_MULTIPROCESSING=0`; `--distributed-executor-backend uni` alone is "
    "overridden. The API server always runs its engine core in another process "
    "(`v1/engine/async_llm.py:184`, `make_async_mp_client`), so two processes is the minimum for `vllm serve`. "
    "With `uni` the OpenMP variables `utils/ompmultiprocessing.py` sets for a worker process are not set: the "
    "worker's threads run with torch's default count and no pinning.",
    "**sleep mode is not available on the CPU**: `platforms/interface.py:231` `is_sleep_mode_available` is true "
    "for CUDA, ROCm and XPU only, and `v1/worker/cpu_worker.py:179-184` `sleep`/`wake_up` only log "
    "\"sleep mode is not supported on CPU, ignore it\". A restart that changes nothing in the model cannot keep "
    "a warmed engine on this platform.",
    "**no switch skips Dynamo's trace on the CPU**: vLLM 0.32 compiles the CPU model with plain torch.compile "
    "(no vLLM compile-cache lines in the log); its AOT artifact (`VLLM_USE_AOT_COMPILE`) would skip the trace "
    "but fails to reload on the CPU (\"'function' object has no attribute 'finalize_loading'\", "
    "bench/results/profiles.md), so the profile keeps it off and a warm start traces again, then takes the "
    "compiled graph from Inductor's FX graph cache.",
    "**no lazy-import switch**: `envs.py` has no variable that defers vLLM's imports; the import profile below "
    "shows what each process pays.",
    "**detokenising**: the only server-wide switch is `--skip-tokenizer-init` (`config/model.py:315`): the "
    "server then takes and returns token ids only, not the OpenAI text API the bundle serves and checks. "
    "`--stream-interval N` (`config/scheduler.py:213`) batches N tokens per output message instead; measured "
    "here as stream-4.",
    "**core placement**: on 2 cores the engine's OpenMP threads take both cores (the profile's binding); vLLM's "
    "own `auto` binding gives the API server and engine core a core of their own and measured 1.7x lower c=8 "
    "throughput (bench/results/cpu-dtype.md), so a placement that reserves a core for the API server is not "
    "measured again here.",
]


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def rows_by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in result["candidates"]}


def grouped(phases: dict[str, float]) -> dict[str, float]:
    """A start's phases summed into bench/profiles.py's four."""
    return {group: sum(phases.get(p, 0.0) for p in parts) for group, parts in GROUPS.items()}


def avx2_reference(path: Path = AVX2_RESULTS) -> dict[str, Any] | None:
    """The default's cold and warm start on the AVX2 machine: ready seconds and the four phases."""
    if not path.exists():
        return None
    recorded = json.loads(path.read_text())
    auto = next((r for r in recorded["candidates"] if r["name"] == BASELINE), None)
    if not auto or not auto.get("cold_phases"):
        return None
    return {"machine": recorded["machine"], "cold": {"ready_s": auto["ready_cold_s"], "phases": auto["cold_phases"]},
            "warm": {"ready_s": auto["ready_warm_s"], "phases": auto["warm_phases"]},
            "c1_tpot_ms": auto["c1"]["mean_tpot_ms"], "c1_ttft_ms": auto["c1"]["mean_ttft_ms"],
            "c8_tok_s": auto["c8"]["output_throughput"]}


def estimate_avx2(start: dict[str, Any], kind: str, here: dict[str, Any], avx2: dict[str, Any]) -> float | None:
    """A start's AVX2 seconds: each of its four phases times the AVX2/here ratio of the default's same phase
    in the same kind of start (a start on a copied cache is a warm start)."""
    base = here.get(kind)
    if not base:
        return None
    ours, theirs = grouped(base["phases"]), avx2[kind]["phases"]
    total = 0.0
    for group, seconds in grouped(start["phases"]).items():
        if ours[group] <= 0:
            return None
        total += seconds * theirs[group] / ours[group]
    return total


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    """Per candidate: deltas against the default, AVX2 estimates and the target verdicts."""
    rows, avx2 = rows_by_name(result), avx2_reference()
    base = rows.get(BASELINE)
    if not base:
        return {}
    here = {"cold": base.get("cold"), "warm": base.get("warm")}
    out: dict[str, Any] = {"avx2": avx2, "candidates": {}}
    for name, row in rows.items():
        entry: dict[str, Any] = {}
        warm, base_warm = row.get("warm") or {}, base.get("warm") or {}
        if warm.get("c1") and base_warm.get("c1"):
            entry["tpot_change"] = warm["c1"]["mean_tpot_ms"] / base_warm["c1"]["mean_tpot_ms"] - 1
        if warm.get("c8") and base_warm.get("c8"):
            entry["c8_change"] = warm["c8"]["output_throughput"] / base_warm["c8"]["output_throughput"] - 1
        if "tpot_change" in entry or "c8_change" in entry:
            entry["no_loss"] = (entry.get("tpot_change", 0.0) <= LOSS_TOLERANCE
                                and entry.get("c8_change", 0.0) >= -LOSS_TOLERANCE)
        if avx2:
            first = row["first"]
            entry["avx2_first_s"] = estimate_avx2(row[first], "cold" if first == "cold" else "warm", here, avx2)
            if warm:
                entry["avx2_warm_s"] = estimate_avx2(warm, "warm", here, avx2)
        out["candidates"][name] = entry
    return out


def _change(entry: dict[str, Any], key: str) -> str:
    return f"{100 * entry[key]:+.0f}%" if key in entry else "-"


def main_table(result: dict[str, Any], analysis: dict[str, Any]) -> list[str]:
    lines = ["| candidate | first start | first (s) | warm (s) | c=1 TTFT ms | c=1 TPOT ms | c=8 out tok/s "
             "| TPOT vs default | c=8 vs default | AVX2 est. first (s) | AVX2 est. warm (s) |", "|---" * 11 + "|"]
    for row in result["candidates"]:
        first, warm = row[row["first"]], row.get("warm") or {}
        c1, c8 = warm.get("c1") or {}, warm.get("c8") or {}
        entry = analysis.get("candidates", {}).get(row["name"], {})
        lines.append(f"| {row['name']} | {row['first']} | {first['ready_s']} | {warm.get('ready_s', '-')} "
                     f"| {_f(c1.get('mean_ttft_ms'), 0)} | {_f(c1.get('mean_tpot_ms'))} "
                     f"| {_f(c8.get('output_throughput'))} | {_change(entry, 'tpot_change')} "
                     f"| {_change(entry, 'c8_change')} "
                     f"| {_f(entry.get('avx2_first_s'), 0)} | {_f(entry.get('avx2_warm_s'), 0)} |")
    return lines


def phase_table(result: dict[str, Any]) -> list[str]:
    names = [name for name, _ in describe()]
    lines = ["| start | " + " | ".join(names) + " | ready |", "|---" * (len(names) + 2) + "|"]
    for row in result["candidates"]:
        for kind in (row["first"], "warm"):
            start = row.get(kind)
            if not start:
                continue
            cells = " | ".join(_f(start["phases"].get(n)) if n in start["phases"] else "·" for n in names)
            lines.append(f"| {row['name']} {kind} | {cells} | {start['ready_s']} |")
    return lines


def compile_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for row in result["candidates"]:
        for kind in (row["first"], "warm"):
            start = row.get(kind)
            if start:
                numbers = start["compile"]
                lines.append(f"- {row['name']} {kind}: Inductor FX graph cache {numbers.get('fx_graph_cache') or '-'}; "
                             f"weights {_f(numbers.get('weights_s'), 2)} s; vLLM's \"init engine\" "
                             f"{_f(numbers.get('engine_init_s'))} s")
    return lines


def import_lines(result: dict[str, Any]) -> list[str]:
    imports = result.get("imports")
    if not imports:
        return []
    lines = ["", "## Imports", "",
             "Each process of a CPU start is a new interpreter (spawn) and imports its entry point first. Wall time "
             "of a plain `python -c 'import <module>'` on a warm page cache, and the costliest packages by "
             "`python -X importtime` (the self time of their modules, summed; under the profiler's overhead):", "",
             "| entry point | process | import wall (s) | importtime total (s) | top packages (s) |",
             "|---|---|---|---|---|"]
    for module, entry in imports.items():
        if not isinstance(entry, dict) or "top" not in entry:
            continue
        top = ", ".join(f"{p['package']} {p['s']}" for p in entry["top"])
        lines.append(f"| `{module}` | {entry['process']} | {entry['wall_s']} | {entry['importtime_s']} | {top} |")
    coverage = imports.get("bytecode", {})
    api = imports.get("vllm.entrypoints.openai.api_server", {})
    lines += ["", "Bytecode: " + "; ".join(f"{name} {c['pyc']} of {c['py']} modules have a .pyc"
                                           for name, c in coverage.items())
              + f". The API server's import without any bytecode (every module compiled from source, as in a venv "
              f"or image installed with `--no-compile` or never imported as a user that may write): "
              f"{imports.get('api_server_without_bytecode_s')} s against {api.get('wall_s')} s with it."]
    return lines


def step_lines(result: dict[str, Any]) -> list[str]:
    """The served c=1 step against the same engine in-process: what the server's process layout costs."""
    profile = result.get("decode_profile")
    if not profile:
        return []
    engine = profile["engine"]
    step = engine["decode_step_ms"]
    gemm = engine["groups_ms"].get("gemm", 0.0) / engine["ops_per_token"]
    lines = ["", "## The decode step (c=1)", "",
             f"The default's engine in-process (`vllm.LLM`, engine core and model in one process, no HTTP; "
             f"bench/decode_profile.py): {step:.1f} ms per decode step, of which {gemm:.1f} ms in the matmul "
             "kernels. The rest of each served step is the server's process layout (HTTP, IPC between the API "
             "server, engine core and worker, detokenising, streaming):", "",
             "| candidate | served c=1 TPOT ms | in-process step ms | process layout ms | layout share |",
             "|---|---|---|---|---|"]
    for row in result["candidates"]:
        c1 = (row.get("warm") or {}).get("c1")
        if c1 and c1.get("mean_tpot_ms"):
            tpot = c1["mean_tpot_ms"]
            lines.append(f"| {row['name']} | {tpot:.1f} | {step:.1f} | {tpot - step:.1f} "
                         f"| {100 * (tpot - step) / tpot:.0f}% |")
    return lines


def verdict_lines(result: dict[str, Any], analysis: dict[str, Any]) -> list[str]:
    avx2 = analysis.get("avx2")
    if not avx2:
        return ["", "No AVX2 reference (bench/results/profiles.json) to estimate from."]
    base = rows_by_name(result)[BASELINE]
    ratio = {kind: avx2[kind]["ready_s"] / base[kind]["ready_s"] for kind in ("cold", "warm") if base.get(kind)}
    lines = ["", "## Against the targets (AVX2, estimated)", "",
             f"The targets are AVX2 figures (2-core {avx2['machine']['cpu']}, {', '.join(avx2['machine']['flags'])}: "
             f"today's default cold {avx2['cold']['ready_s']} s, warm {avx2['warm']['ready_s']} s, "
             "bench/results/profiles.json). This machine runs the same default "
             + ", ".join(f"{kind} {ratio[kind]:.2f}x faster" for kind in ratio)
             + ". Each start here is scaled phase by phase: its four phases of bench/profiles.py (engine-core "
             "start, worker start, weights + compile + warm-up + KV cache, the API server's imports and rest) times "
             "the AVX2/here ratio of the default's same phase in the same kind of start; a lever that removes a "
             "phase (the worker process) removes its AVX2 seconds too. A lever that shrinks the warm-up pass is "
             "scaled by the default's compile + warm-up ratio: an approximation, as AVX2 runs float32 and this "
             "machine may run bf16, and a start's phases do not all scale alike.", "",
             "| candidate | warm est. (s) | target | cold est. (s) | target | c=1 TPOT / c=8 no loss |",
             "|---|---|---|---|---|---|"]
    for row in result["candidates"]:
        entry = analysis["candidates"].get(row["name"], {})
        warm, first = entry.get("avx2_warm_s"), entry.get("avx2_first_s")
        cold_label = "cold" if row["first"] == "cold" else "first on a shipped cache"
        warm_v = "-" if warm is None else "PASS" if warm <= TARGETS["warm_s"] else "NOT MET"
        first_v = "-" if first is None else "PASS" if first <= TARGETS["cold_s"] else "NOT MET"
        loss = "-" if "no_loss" not in entry else "yes" if entry["no_loss"] else "**LOSS**"
        lines.append(f"| {row['name']} | {_f(warm, 0)} | **{warm_v}** (<= {TARGETS['warm_s']:.0f}) "
                     f"| {_f(first, 0)} ({cold_label}) | **{first_v}** (<= {TARGETS['cold_s']:.0f}) | {loss} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    analysis = result.get("analysis") or analyse(result)
    machine, loads = result["machine"], result["loads"]
    lines = ["# Time to ready on the CPU: today's default against the start levers (one run)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, flags "
             f"{', '.join(machine['flags'])}; vLLM {result['vllm']}; Gemma 3 270M fixture weights; run "
             f"{result['started']} - {result.get('finished', '?')} UTC, one server at a time.", "",
             "*Ready*: spawn to /health 200 with the model listed (the weights in the page cache). *cold*: an empty "
             "compile cache of its own; *copied*: a copy of another candidate's warmed cache in a new folder (a "
             "first start on a fresh volume from an image that ships the cache); *warm*: the same command again on "
             "its cache. Loads on the warm server, short presets of the guide's (`vllm bench serve`, random "
             f"{loads['c1']['input_len']} in / {loads['c1']['output_len']} out, EOS ignored): c=1 with "
             f"{loads['c1']['num_prompts']} prompts, c=8 with {loads['c8']['num_prompts']}. Every start runs with "
             "TORCH_LOGS=dynamo,inductor so the compile shows in phases.", "", "Candidates:", ""]
    lines += [f"- **{row['name']}**: {row['description']}"
              + (f"; settings {row['settings']}" if row["settings"] else "")
              + (f"; env {row['env']}" if row["env"] else "") for row in result["candidates"]]
    lines += ["", *main_table(result, analysis)]
    lines += verdict_lines(result, analysis)
    lines += ["", "## Phases of every start (seconds, from each output line's arrival)", "",
              *[f"- **{name}**: {what}" for name, what in describe()], "", *phase_table(result), "",
              "· = no such line in that start (its time is in the next phase).", "", "Compile evidence:", "",
              *compile_lines(result)]
    lines += step_lines(result)
    lines += import_lines(result)
    lines += ["", f"## What {VLLM} rules out", "", *(f"- {fact}" for fact in SOURCE_FACTS)]
    if result.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in result["notes"])]
    lines += ["", "Reproduce: `make bench-start` (= `python bench/start.py`; `--candidates` for a subset).", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """One stacked bar of phases per start: where each start's time goes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _ in describe()]
    bars = [(f"{row['name']} {kind}", row[kind]) for row in result["candidates"]
            for kind in (row["first"], "warm") if row.get(kind)]
    figure, axis = plt.subplots(figsize=(12, 0.45 * len(bars) + 1.8))
    colours = plt.get_cmap("tab20").colors
    for index, (_, start) in enumerate(reversed(bars)):
        left = 0.0
        for number, name in enumerate(names):
            width = start["phases"].get(name, 0.0)
            axis.barh(index, width, left=left, color=colours[number % len(colours)],
                      label=name if index == 0 else None)
            left += width
        axis.text(left + 0.5, index, f"{start['ready_s']} s", va="center", fontsize=8)
    axis.set_yticks(range(len(bars)), [label for label, _ in reversed(bars)], fontsize=8)
    axis.set_xlabel("seconds from spawn to ready")
    axis.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    axis.set_title(f"Start phases, {result['machine']['cpu']}, {result['machine']['cores']} cores", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
