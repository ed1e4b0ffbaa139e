"""`eval/perf_eval.py`: the guide's performance workloads against the bundle's server, one report per run.

Writes <results dir>/<run>/perf.json (default ./perf_results), perf.md, PNG plots, and vLLM's own result files
under raw/. Settings come from the environment (or --env-file) exactly as the server's
do, so the in-process engine runs the server's flags and the report names the weights
and dtype measured. A user mistake exits 2 with one line; a server that does not answer
or a failed benchmark exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from entrypoint.errors import SettingsError, UserError, run_cli
from entrypoint.http import bearer
from entrypoint.resolver import load_settings
from entrypoint.settings import Settings, inherited_environment
from verification import perf, plots, roofline
from verification.perf_report import perf_markdown
from verification.runs import add_results_argument, environment, new_run_dir, write_report

console = Console(highlight=False)
GUIDE_BYTES_DTYPE = "bfloat16"  # the guide serves the bf16 checkpoint with dtype auto
GUIDE_BANDWIDTH = ("Ascend910B", 1600.0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="perf_eval.py", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, help="a .env file under the process environment (as the server's)")
    parser.add_argument("--url", help="server base URL (default: from HOST and PORT)")
    parser.add_argument("--served-model-name", "--model-name", dest="served_model_name",
                        help="model name in requests (default: SERVED_MODEL_NAME)")
    parser.add_argument("--model", type=Path, help="weights folder: offline engine and tokenizer (default: the "
                        "folder the running bundle serves, else where MODEL_CACHE_DIR holds MODEL_ID)")
    parser.add_argument("--preset", choices=sorted(perf.PRESETS), default="guide",
                        help="guide: the guide's workloads; quick: a few short prompts (tests)")
    parser.add_argument("--only", default=",".join(perf.WORKLOADS),
                        help=f"comma-separated workloads (default: all of {','.join(perf.WORKLOADS)})")
    parser.add_argument("--sweep-levels", metavar="LEVELS", help="the sweep's concurrency levels: a comma-separated "
                        "subset of the preset's (default: all of them; " + "; ".join(
                            f"{name}: {_levels(preset)}" for name, preset in sorted(perf.PRESETS.items())) + ")")
    parser.add_argument("--run-name", help="run folder name (default: <UTC time>-<platform>)")
    add_results_argument(parser)
    parser.add_argument("--engine-args", default="", help="more engine flags for the in-process benches, "
                        "appended after the server's (shell words; on an accelerator shared with the server the "
                        "bench asks for half the memory the server leaves free, e.g. --gpu-memory-utilization 0.05)")
    parser.add_argument("--device-bandwidth-gbps", type=float, help="memory bandwidth for the roofline instead of "
                        "the measured (CPU) or published (NPU) one")
    parser.add_argument("--bandwidth-seconds", type=float, default=3.0, help="length of the copy benchmark")
    return parser.parse_args(argv)


def selected_workloads(only: str) -> list[str]:
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in perf.WORKLOADS]
    if unknown or not names:
        raise SettingsError([f"--only={only!r}: unknown workload {', '.join(unknown) or '(none)'}; "
                             f"allowed: a comma-separated subset of {','.join(perf.WORKLOADS)}"])
    return [name for name in perf.WORKLOADS if name in names]


def _levels(preset: perf.Preset) -> str:
    return ",".join(str(load.concurrency) for load in preset.sweep)


def with_sweep_levels(preset: perf.Preset, levels: str | None) -> perf.Preset:
    """The preset with only the sweep levels asked for, in its own order (None: all of them)."""
    if levels is None:
        return preset
    wanted = {part.strip() for part in levels.split(",") if part.strip()}
    offered = {str(load.concurrency) for load in preset.sweep}
    if not wanted or not wanted <= offered:
        raise SettingsError([f"--sweep-levels={levels!r}: allowed: a comma-separated subset of the {preset.name} "
                             f"preset's levels {_levels(preset)}"])
    return dataclasses.replace(preset, sweep=tuple(load for load in preset.sweep if str(load.concurrency) in wanted))


def default_model_dir(settings: Settings, url: str) -> Path:
    """The folder the running bundle serves (its state file), else where the cache would hold MODEL_ID."""
    from entrypoint.state import StateDir
    from entrypoint.weights import local_model_path

    state = StateDir(settings.state_dir).state() or {}
    if state.get("model_path") and state.get("url", "").rstrip("/") == url:
        return Path(state["model_path"])
    return local_model_path(settings)


def check_model_dir(path: Path, given: bool) -> Path:
    if not (path / "config.json").is_file():
        source = f"--model={path}" if given else f"weights folder {path} (from the settings)"
        raise SettingsError([f"{source}: no config.json there; allowed: a model folder (pass --model PATH)"])
    return path


def check_server(url: str, api_key: str | None) -> None:
    """One GET /v1/models: a server that does not answer is one clear line, not a benchmark traceback."""
    headers = bearer(api_key or None)
    try:
        response = requests.get(f"{url}/v1/models", headers=headers, timeout=10)
        response.raise_for_status()
    except requests.RequestException as exc:
        reason = type(exc).__name__ if not isinstance(exc, requests.HTTPError) else f"HTTP {exc.response.status_code}"
        raise UserError(f"no server answers at {url}/v1/models ({reason}); start it first "
                        "(python -m entrypoint serve) or pass --url") from None


def roofline_block(settings: Settings, model_dir: Path, dtype: str, results: dict[str, Any],
                   args: argparse.Namespace) -> dict[str, Any] | None:
    """Ours (measured or published bandwidth) and the guide's NPU run, on the same checkpoint."""
    rows: dict[str, Any] = {}
    bandwidth, source = bandwidth_for(settings.platform, args)
    tpot = single_stream_tpot(results)
    if bandwidth:
        row = roofline.roofline(roofline.decode_bytes_per_step(model_dir, dtype), bandwidth,
                                1000 / tpot if tpot else None)
        rows[f"ours: {settings.platform}, {dtype}"] = {**row, "bandwidth_source": source}
    guide = roofline.roofline(roofline.decode_bytes_per_step(model_dir, GUIDE_BYTES_DTYPE), GUIDE_BANDWIDTH[1],
                             1000 / perf.GUIDE_FIGURES["latency"]["mean_tpot_ms"])
    rows[f"guide: NPU 910B4, {GUIDE_BYTES_DTYPE}"] = {**guide, "bandwidth_source": f"published, {GUIDE_BANDWIDTH[0]}"}
    return {"rows": rows, "measured_from": "1000 / mean TPOT at concurrency 1"}


def bandwidth_for(platform: str, args: argparse.Namespace) -> tuple[float | None, str]:
    """The roofline's bandwidth: given, published for the NPU, or measured by a copy benchmark here."""
    if args.device_bandwidth_gbps:
        return args.device_bandwidth_gbps, "given"
    if platform == "npu":
        name = roofline.npu_device_name()
        published = roofline.published_bandwidth_gbps(name)
        if published is None:
            console.print(f"[yellow]no published bandwidth for device {name!r}; pass --device-bandwidth-gbps")
        return published, f"published, {name}"
    if platform == "cuda":
        console.print("[yellow]CUDA: measuring host memory; pass --device-bandwidth-gbps for the GPU's")
    console.print(f"measuring memory bandwidth (numpy copy, {args.bandwidth_seconds:g} s)...")
    return roofline.measure_copy_bandwidth_gbps(seconds=args.bandwidth_seconds), "measured copy"


def single_stream_tpot(results: dict[str, Any]) -> float | None:
    """Mean TPOT (ms) at concurrency 1: the latency workload's, else the sweep's first level."""
    serve = results.get("latency", {}).get("serve")
    if serve and serve.get("mean_tpot_ms"):
        return serve["mean_tpot_ms"]
    level_one = [row for row in results.get("sweep", []) if row["load"]["concurrency"] == 1]
    return level_one[0].get("mean_tpot_ms") if level_one else None


def make_plots(results: dict[str, Any], run_dir: Path, subtitle: str) -> list[str]:
    made: list[Path] = []
    sweep = results.get("sweep")
    if sweep:
        made.append(plots.throughput_vs_concurrency(sweep, run_dir / "throughput_vs_concurrency.png", subtitle))
        made.append(plots.latency_vs_concurrency(sweep, run_dir / "latency_vs_concurrency.png", subtitle))
    series: dict[str, list[float]] = {}
    if "online" in results:
        series[f"online, c={results['online']['load']['concurrency']}"] = \
            [r["e2e_ms"] for r in results["online"]["requests"]]
    if results.get("latency", {}).get("serve"):
        series["latency, c=1"] = [r["e2e_ms"] for r in results["latency"]["serve"]["requests"]]
    for row in sweep or []:
        series[f"sweep, c={row['load']['concurrency']}"] = [r["e2e_ms"] for r in row["requests"]]
    if series:
        made.append(plots.latency_distribution(series, run_dir / "latency_distribution.png", subtitle))
    return [path.name for path in made]


class Steps:
    """Numbered step announcements, so a long run shows where it is."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def start(self, title: str, command: list[str] | None = None) -> None:
        self.done += 1
        # a plain heading on its own line: a rule would be cut to 80 columns in a log, and vLLM's
        # last output line does not always end with a newline
        console.print(f"\n[bold]==> [{self.done}/{self.total}] {title}", soft_wrap=True)
        if command:
            console.print(shlex.join(command), style="dim", soft_wrap=True)


def run_workloads(preset: perf.Preset, names: list[str], runner: perf.Runner) -> dict[str, Any]:
    """Each selected workload, in the guide's order; the results under the guide's names too."""
    sweep_levels = preset.sweep if "sweep" in names else ()
    steps = Steps(sum(name != "sweep" for name in names) + ("latency" in names) + len(sweep_levels))
    results: dict[str, Any] = {}
    if "throughput" in names:
        steps.start(f"5.1 offline throughput: {preset.throughput.num_prompts} prompts, "
                    f"{preset.throughput.input_len}/{preset.throughput.output_len} tokens (vllm bench throughput)")
        results["throughput"] = runner.throughput(preset.throughput)
    if "online" in names:
        steps.start(f"5.2 online: {preset.online.num_prompts} prompts at concurrency {preset.online.concurrency} "
                    "(vllm bench serve)")
        online = runner.serve("online", preset.online)
        results["online"] = {**online, "guide_metrics": perf.online_metrics(online)}
    if "latency" in names:
        steps.start(f"5.3 latency: {preset.latency.num_prompts} requests one at a time (vllm bench serve, c=1)")
        serve = runner.serve("latency-serve", preset.latency, warmups=preset.latency_warmup)
        results["latency"] = {"serve": {**serve, "guide_metrics": perf.latency_metrics(serve)}}
        steps.start(f"5.3 latency: batch 1, {preset.latency.num_prompts} iterations, in-process (vllm bench latency)")
        results["latency"]["engine"] = runner.latency(preset.latency, preset.latency_warmup)
    for load in sweep_levels:
        steps.start(f"sweep: concurrency {load.concurrency}, {load.num_prompts} prompts (vllm bench serve)")
        results.setdefault("sweep", []).append(runner.serve(f"sweep-c{load.concurrency}", load))
    return results


def evaluate(args: argparse.Namespace) -> int:
    settings = load_settings(env_file=args.env_file)
    names = selected_workloads(args.only)
    preset = with_sweep_levels(perf.PRESETS[args.preset], args.sweep_levels)
    url = (args.url or settings.base_url).rstrip("/")
    served_name = args.served_model_name or settings.served_model_name
    model_dir = check_model_dir(args.model or default_model_dir(settings, url), given=args.model is not None)
    # The server's API key reaches vLLM's client only through bench_env (OPENAI_API_KEY), never its argv.
    api_key = settings.api_key_value
    if any(name in names for name in ("online", "latency", "sweep")):
        check_server(url, api_key)
    from entrypoint.render import render_command

    command = render_command(settings, model_dir)
    engine = (perf.engine_args(command.argv)
              + perf.shared_device_args(settings.platform, settings.gpu_memory_utilization)
              + shlex.split(args.engine_args))
    dtype = roofline.served_dtype(settings.dtype, model_dir)
    run_dir = new_run_dir(args.results, args.run_name, settings.platform)
    console.print(f"perf run [bold]{run_dir}[/]: preset {args.preset}, workloads {','.join(names)}; weights "
                  f"{model_dir} as {dtype}; server {url} ({served_name})")
    runner = perf.Runner(run_dir, perf.bench_env({**inherited_environment(), **command.env}, api_key),
                         model_dir, engine, url, served_name, settings.seed)
    data: dict[str, Any] = {"environment": environment(settings, str(model_dir), dtype), "preset": args.preset,
                            "url": url, "served_model_name": served_name, "engine_args": engine, "results": {}}
    started = time.monotonic()
    data["results"] = run_workloads(preset, names, runner)
    data["duration_s"] = time.monotonic() - started
    console.print("\n[bold]==> roofline, plots, report", soft_wrap=True)
    data["roofline"] = roofline_block(settings, model_dir, dtype, data["results"], args)
    data["plots"] = make_plots(data["results"], run_dir, f"{served_name}, {settings.platform}, {dtype}, "
                               f"{args.preset} preset")
    json_path, md_path = write_report(run_dir, "perf", data, perf_markdown(data))
    console.print(f"wrote {md_path}, {json_path} and {len(data['plots'])} plots")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: evaluate(args))
