"""The CPU profile's measurements: bf16 against float32 (and other settings) with `vllm bench serve`.

Each dtype gets one server started from the rendered CPU command of the default settings
(CPU_TUNING=off, so only DTYPE and the --set settings differ; compiled mode, compile cache
under $BUNDLE_CACHE/vllm-compile), then random 200-in/200-out prompts at concurrency 1 and 8.
The numbers behind the CPU profile's rules (entrypoint/cpu_tuning.py).

Writes bench/results/<name>.json and .md (default cpu-dtype). Run it under the heavy lock:
    flock /tmp/vllm-heavy.lock python bench/cpu_dtype.py [--dtypes float32 bfloat16] [--set KEY=VALUE] [--name N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_facts, server, wait_vllm, write_report  # noqa: E402
from entrypoint.render import render_command  # noqa: E402
from entrypoint.resolver import load_settings  # noqa: E402
from entrypoint.settings import inherited_environment  # noqa: E402
from testbed.fixture import fixture_weights, served_fixture  # noqa: E402
from testbed.net import free_port  # noqa: E402
from testbed.paths import COMPILE_CACHE  # noqa: E402

METRICS = ("mean_ttft_ms", "median_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "output_throughput",
           "completed", "duration")


def bench(url: str, name: str, model_path: str, concurrency: int, prompts: int, out: Path) -> dict[str, float]:
    """One `vllm bench serve` run; its saved metrics."""
    subprocess.run([sys.executable, "-m", "verification.vllm_cli", "bench", "serve", "--backend", "vllm",
                    "--base-url", url, "--model", name, "--tokenizer", model_path, "--dataset-name", "random",
                    "--random-input-len", "200", "--random-output-len", "200", "--ignore-eos",
                    "--num-prompts", str(prompts), "--max-concurrency", str(concurrency), "--seed", "0",
                    "--disable-tqdm", "--save-result", "--result-dir", str(out.parent),
                    "--result-filename", out.name], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    return {key: data[key] for key in METRICS if key in data}


def dtype_settings(dtype: str, model_path: str, extra: dict[str, str]) -> dict[str, str]:
    """One server's settings: the fixture in this dtype, the CPU profile's tuning off."""
    return {"PLATFORM": "cpu", "CPU_TUNING": "off", "DTYPE": dtype, **served_fixture(model_path),
            "PORT": str(free_port()), "HOST": "127.0.0.1", "COMPILE_CACHE_DIR": str(COMPILE_CACHE), **extra}


def measure(dtype: str, model_path: str, workdir: Path, c1_prompts: int, c8_prompts: int,
            extra: dict[str, str]) -> dict[str, object]:
    """Start one server with this dtype, time it to ready, run both concurrencies."""
    settings = load_settings(dtype_settings(dtype, model_path, extra))
    command = render_command(settings, model_path)
    log = workdir / f"{dtype}.log"
    started = time.monotonic()
    with server(command.argv, {**inherited_environment(), **command.env}, log) as child:
        wait_vllm(settings, child, log, poll=1.0)
        ready = round(time.monotonic() - started, 1)
        runs = {f"c{c}": bench(settings.base_url, settings.served_model_name, model_path, c, n,
                               workdir / f"{dtype}-c{c}.json")
                for c, n in ((1, c1_prompts), (8, c8_prompts))}
    return {"dtype": dtype, "settings": extra, "ready_seconds": ready, "argv": command.argv[1:],
            "env": command.env, **runs}


def markdown(result: dict) -> str:
    facts = result["machine"]
    lines = ["# CPU profile measurements: dtype, OpenMP binding, token budget (plain vLLM, the bundle CPU command)", "",
             f"Machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, "
             f"flags {', '.join(facts['flags'])}; vLLM {result['vllm']}; Gemma 3 270M fixture weights "
             "(bf16 checkpoint); compiled mode (not eager), warm compile cache where noted.", "",
             f"Workload: `vllm bench serve`, random 200 in / 200 out (ignore EOS), c=1 with "
             f"{result['c1_prompts']} prompts, c=8 with {result['c8_prompts']} prompts.", "",
             "| dtype | ready (s) | c=1 TTFT ms | c=1 TPOT ms | c=1 out tok/s | c=8 TTFT ms | c=8 TPOT ms "
             "| c=8 out tok/s |", "|---|---|---|---|---|---|---|---|"]
    for row in result["runs"]:
        c1, c8 = row["c1"], row["c8"]
        label = " ".join([row["dtype"], *(f"{k}={v}" for k, v in row.get("settings", {}).items())])
        lines.append(f"| {label} | {row['ready_seconds']} | {c1['mean_ttft_ms']:.0f} | "
                     f"{c1['mean_tpot_ms']:.0f} | {c1['output_throughput']:.1f} | {c8['mean_ttft_ms']:.0f} | "
                     f"{c8['mean_tpot_ms']:.0f} | {c8['output_throughput']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--c1-prompts", type=int, default=3)
    parser.add_argument("--c8-prompts", type=int, default=16)
    parser.add_argument("--model-path", default="")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a bundle setting for every run (e.g. VLLM_CPU_OMP_THREADS_BIND=0-1)")
    parser.add_argument("--name", default="cpu-dtype", help="report name under bench/results")
    args = parser.parse_args()
    import vllm

    model_path = args.model_path or str(fixture_weights())
    workdir = Path(tempfile.mkdtemp(prefix="cpu-dtype-"))  # kept: the server logs explain a failed run
    print(f"logs in {workdir}", file=sys.stderr)
    extra = dict(item.split("=", 1) for item in args.set)
    runs = [measure(dtype, model_path, workdir, args.c1_prompts, args.c8_prompts, extra) for dtype in args.dtypes]
    result = {"machine": cpu_facts(), "vllm": vllm.__version__, "c1_prompts": args.c1_prompts,
              "c8_prompts": args.c8_prompts, "runs": runs}
    write_report(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
