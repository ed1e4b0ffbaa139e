"""perf.md: the environment, the guide's tables (5.1-5.3) with its NPU figures beside ours, the sweep, the roofline."""

from __future__ import annotations

from typing import Any

from verification.perf import GUIDE_FIGURES
from verification.runs import environment_markdown

GUIDE_DEVICE = "guide: NPU 910B4"

# (our key, the guide's row label) per guide table, in the guide's order
THROUGHPUT_ROWS = (("requests_per_s", "Throughput (requests/s)"), ("total_tokens_per_s", "Total tokens/s"),
                   ("output_tokens_per_s", "Output tokens/s"))
ONLINE_ROWS = (("duration", "duration (s)"), ("request_throughput", "request_throughput (req/s)"),
               ("output_token_throughput", "output_token_throughput (tok/s)"),
               ("total_token_throughput", "total_token_throughput (tok/s)"), ("mean_latency_ms", "mean_latency_ms"))
LATENCY_ROWS = (("mean_total_ms", "mean_total_ms"), ("median_total_ms", "median_total_ms"),
                ("p99_total_ms", "p99_total_ms"), ("mean_ttft_ms", "mean_ttft_ms"), ("mean_tpot_ms", "mean_tpot_ms"))


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table cell; a dash for a missing one."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _load_text(load: dict[str, Any]) -> str:
    at_once = f", concurrency={load['concurrency']}" if load.get("concurrency") else ""
    return f"{load['num_prompts']} prompts{at_once}, input={load['input_len']}, output={load['output_len']}"


def _side_by_side(rows: tuple[tuple[str, str], ...], guide: dict[str, Any], ours: dict[str, Any],
                  ours_label: str) -> list[str]:
    lines = [f"| metric | {GUIDE_DEVICE} | {ours_label} |", "|---|---:|---:|"]
    lines += [f"| {label} | {fmt(guide.get(key))} | {fmt(ours.get(key))} |" for key, label in rows]
    return lines


def throughput_section(result: dict[str, Any], label: str) -> list[str]:
    guide = GUIDE_FIGURES["throughput"]
    return ["## 5.1 Offline throughput (`vllm bench throughput`)", "",
            f"Guide conditions: {guide['conditions']}. Ours: {_load_text(result['load'])}; in-process engine on "
            "the weights folder with the server's engine flags.", "",
            *_side_by_side(THROUGHPUT_ROWS, guide, result, label), ""]


def online_section(result: dict[str, Any], label: str) -> list[str]:
    guide = GUIDE_FIGURES["online"]
    return ["## 5.2 Online throughput (`vllm bench serve`)", "",
            f"Guide conditions: {guide['conditions']}. Ours: {_load_text(result['load'])}; against the running "
            f"server, EOS ignored; {result['completed']} completed, {result['failed']} failed.", "",
            *_side_by_side(ONLINE_ROWS, guide, result["guide_metrics"], label), ""]


def latency_section(result: dict[str, Any], label: str) -> list[str]:
    guide = GUIDE_FIGURES["latency"]
    serve = result.get("serve")
    lines = ["## 5.3 Latency (batch 1)", "",
             f"Guide conditions: {guide['conditions']}. Ours: total, TTFT and TPOT from `vllm bench serve "
             "--max-concurrency 1` (one streamed request at a time, the same requests for all five); "
             "`vllm bench latency` (in-process engine, batch 1, no HTTP) below for the engine-only total.", ""]
    if serve:
        lines += [f"Serve: {_load_text(serve['load'])}.", "",
                  *_side_by_side(LATENCY_ROWS, guide, serve["guide_metrics"], label), ""]
    engine = result.get("engine")
    if engine:
        lines += [f"Engine only (`vllm bench latency`, {engine['iterations']} iterations, "
                  f"input={engine['load']['input_len']}, output={engine['load']['output_len']}):", "",
                  "| metric | ms |", "|---|---:|",
                  *(f"| {key} | {fmt(engine[key])} |" for key in ("mean_total_ms", "median_total_ms", "p99_total_ms")),
                  ""]
    return lines


def sweep_section(sweep: list[dict[str, Any]]) -> list[str]:
    lines = ["## Concurrency sweep (`vllm bench serve --max-concurrency N`)", "",
             "| concurrency | prompts | requests/s | output tok/s | total tok/s | mean TTFT ms | mean TPOT ms "
             "| mean E2E ms | p99 E2E ms | failed |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sweep:
        load = row["load"]
        lines.append(f"| {load['concurrency']} | {load['num_prompts']} | {fmt(row['request_throughput'])} "
                     f"| {fmt(row['output_throughput'])} | {fmt(row['total_token_throughput'])} "
                     f"| {fmt(row.get('mean_ttft_ms'))} | {fmt(row.get('mean_tpot_ms'))} "
                     f"| {fmt(row.get('mean_e2el_ms'))} | {fmt(row.get('p99_e2el_ms'))} | {row['failed']} |")
    return [*lines, ""]


def roofline_section(roof: dict[str, Any]) -> list[str]:
    lines = ["## Decode roofline (batch 1, memory bound)", "",
             "Bytes per decode step = the checkpoint's parameters (safetensors headers; the tied embedding counted "
             "once, as the LM head, plus the one row the lookup reads) x bytes per element of the served dtype. "
             "Bound = bandwidth / bytes per step; measured = 1000 / mean TPOT at concurrency 1.", "",
             "| | bytes/step | bandwidth GB/s | bound tok/s | measured tok/s | fraction of bound |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, row in roof["rows"].items():
        fraction = row.get("fraction_of_bound")
        lines.append(f"| {label} | {row['bytes_per_step'] / 1e6:,.1f} MB | {fmt(row['bandwidth_gbps'], 1)} "
                     f"({row['bandwidth_source']}) | {fmt(row['bound_tokens_per_s'], 1)} "
                     f"| {fmt(row['measured_tokens_per_s'])} | {'—' if fraction is None else f'{fraction:.1%}'} |")
    return [*lines, ""]


def perf_markdown(data: dict[str, Any]) -> str:
    """The whole report."""
    env = data["environment"]
    label = f"ours: {env['platform']}, {env['dtype']}"
    results = data["results"]
    lines = [f"# Performance: {data['served_model_name']} ({data['preset']} preset)", "",
             environment_markdown(env),
             f"- server: {data['url']} (serves `{data['served_model_name']}`; its settings are assumed to be "
             "the ones below, as the bundle starts it)",
             f"- in-process engine flags: `{' '.join(data['engine_args'])}`", ""]
    if "throughput" in results:
        lines += throughput_section(results["throughput"], label)
    if "online" in results:
        lines += online_section(results["online"], label)
    if "latency" in results:
        lines += latency_section(results["latency"], label)
    if "sweep" in results:
        lines += sweep_section(results["sweep"])
    if data.get("roofline"):
        lines += roofline_section(data["roofline"])
    if data.get("plots"):
        lines += ["## Plots", "", *(f"![{name}]({name})" for name in data["plots"]), ""]
    lines += ["vLLM's own result files and logs of every step are in `raw/`."]
    return "\n".join(lines)
