"""Time to ready on the CPU: today's default against each start lever, in one run, every start split into phases.

For each candidate the CPU command is rendered from the bundle's settings (fixture
weights, MODEL_PROFILE=gemma-3-270m-fixture, the candidate's settings) and started
directly, one server at a time:

1. cold: on an empty compile cache of its own (or, for a candidate seeded from another,
   on a copy of that one's cache in a new folder: a fresh volume from an image that ships
   a warmed cache), timed from spawn to /health 200 with the model listed;
2. warm: the same command on the same cache again;
3. on the warm server, the short loads of bench/profiles.py: c=1 (TTFT, TPOT) and c=8
   (output tok/s).

Every output line is stamped on arrival, so each start splits into phases (bench/start_phases.py):
API server imports, its config, the engine core's spawn and imports, the worker's, weights,
compile and the warm-up forward pass, KV cache, the API server's finish. Once per run: the
import cost of each process's entry point and what bytecode saves (bench/start_imports.py).
Writes bench/results/start.{json,md,png}.

    python bench/start.py [--candidates auto two-process ...] [--c1-prompts 5] [--c8-prompts 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, cpu_facts, cpu_fixture, server, wait_vllm, write_report  # noqa: E402
from bench.profiles import decode_profile, distinct, known_candidates, run_arguments, serve_bench  # noqa: E402
from bench.start_imports import bytecode_coverage, profile  # noqa: E402
from bench.start_phases import TORCH_ENV, compile_numbers, phases  # noqa: E402
from bench.start_report import analyse, markdown, plot  # noqa: E402
from entrypoint.render import render_command  # noqa: E402
from entrypoint.resolver import load_settings  # noqa: E402
from entrypoint.settings import inherited_environment  # noqa: E402
from testbed.fixture import fixture_weights  # noqa: E402
from testbed.net import free_port  # noqa: E402
from verification.perf import BenchLoad  # noqa: E402
from verification.roofline import served_dtype  # noqa: E402


@dataclass(frozen=True)
class Candidate:
    """One way to start: settings (and plain env for what no setting renders) on top of the default."""

    description: str
    settings: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    seed_cache: str = ""  # start on a copy of this candidate's compile cache instead of an empty one
    loads: tuple[str, ...] = ("c1", "c8")  # run on the warm server; none: no warm start either


BASELINE = "auto"
CANDIDATES: dict[str, Candidate] = {
    BASELINE: Candidate("today's default: the CPU profile `make up` renders on this machine"),
    "cache-copy": Candidate(
        "the default's command on a copy of the default's warmed compile cache in a new folder (a first start "
        "on a fresh volume, from an image that ships the cache)", seed_cache=BASELINE, loads=()),
    "batched-1024": Candidate(
        "MAX_NUM_BATCHED_TOKENS=1024: the warm-up forward pass (vLLM's profile run) and each prefill chunk "
        "are 1024 tokens instead of 4096", settings={"MAX_NUM_BATCHED_TOKENS": "1024"}),
    "batched-4096": Candidate(
        "MAX_NUM_BATCHED_TOKENS=4096, the guide's budget: a warm-up pass and prefill chunks of 4096 tokens",
        settings={"MAX_NUM_BATCHED_TOKENS": "4096"}),
    "stream-4": Candidate(
        "--stream-interval 4: the engine hands the API server tokens 4 at a time (decode overhead; starts on "
        "a copy of the default's cache)", settings={"EXTRA_ARGS": "--stream-interval 4"}, seed_cache=BASELINE),
    "chat-template": Candidate(
        "--chat-template naming the model's own chat_template.jinja: the API server's renderer takes it as given "
        "instead of loading the tokenizer again as an AutoProcessor to look for one (a start on a copy of the "
        "default's cache)", settings={"EXTRA_ARGS": "--chat-template {model}/chat_template.jinja"},
        seed_cache=BASELINE, loads=()),
    # Its decode is several times slower on this machine (dev runs), so it gets the c=1 load only.
    "two-process": Candidate(
        "VLLM_ENABLE_V1_MULTIPROCESSING=0: the worker runs inside the engine-core process (vLLM's uni "
        "executor), so two processes import torch and vLLM instead of three",
        env={"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, loads=("c1",)),
    "march-native": Candidate(
        "TORCHINDUCTOR_CPP_MARCH=native: Inductor's kernels for every extension of this CPU (torch's own "
        "default) instead of the portable x86-64 level the CPU profile sets so that shipped caches load",
        settings={"TORCHINDUCTOR_CPP_MARCH": "native"}),
    "batched-512": Candidate("MAX_NUM_BATCHED_TOKENS=512", settings={"MAX_NUM_BATCHED_TOKENS": "512"}),
}
# The one of batched-1024 and batched-4096 that is the default's own budget is skipped (`distinct`).
DEFAULT_RUN = (BASELINE, "cache-copy", "chat-template", "batched-1024", "batched-4096", "stream-4", "two-process")
POLL_SECONDS = 0.25


def progress(message: str) -> None:
    print(f"[start {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def formatted(candidate: Candidate, model_path: Path) -> dict[str, str]:
    """The candidate's settings with {model} replaced by the weights' folder."""
    return {key: value.format(model=model_path) for key, value in candidate.settings.items()}


def one_start(name: str, start: str, candidate: Candidate, common: dict[str, str], folder: Path,
              loads: dict[str, BenchLoad], model_path: Path) -> dict[str, Any]:
    """One start of a candidate on its cache folder: seconds to ready, phases, compile numbers, loads."""
    settings = load_settings({**common, **formatted(candidate, model_path),
                              "COMPILE_CACHE_DIR": str(folder / "compile-cache"), "PORT": str(free_port())})
    command = render_command(settings, str(model_path))
    env = {**inherited_environment(), **command.env, **candidate.env, **TORCH_ENV, "PYTHONUNBUFFERED": "1"}
    log = folder / f"{start}.log"
    progress(f"{name}: {start} start")
    measured: dict[str, Any] = {}
    started = time.monotonic()
    with server(command.argv, env, log, stamped=True) as child:
        wait_vllm(settings, child, log, POLL_SECONDS)
        ready = time.monotonic() - started
        progress(f"{name}: {start} ready in {ready:.1f} s")
        for key, load in loads.items():
            progress(f"{name}: bench serve {key} ({load.num_prompts} prompts)")
            measured[key] = serve_bench(load, settings.base_url, settings.served_model_name, model_path,
                                        folder / f"{key}.json")
    return {"ready_s": round(ready, 1), "phases": phases(log, ready), "compile": compile_numbers(log),
            "argv": command.argv[1:], "dtype": served_dtype(settings.dtype, model_path), **measured}


def measure(name: str, common: dict[str, str], model_path: Path, workdir: Path, loads: dict[str, BenchLoad]
            ) -> dict[str, Any]:
    """A candidate's first start (cold, or on a copied cache), then its warm start with the loads."""
    candidate = CANDIDATES[name]
    folder = workdir / name
    folder.mkdir(parents=True)
    first = "cold"
    if candidate.seed_cache:
        shutil.copytree(workdir / candidate.seed_cache / "compile-cache", folder / "compile-cache", symlinks=True)
        first = "copied"
    row: dict[str, Any] = {"name": name, "description": candidate.description, "settings": candidate.settings,
                           "env": candidate.env, "first": first}
    row[first] = one_start(name, first, candidate, common, folder, {}, model_path)
    if candidate.loads:
        row["warm"] = one_start(name, "warm", candidate, common, folder,
                                {key: loads[key] for key in candidate.loads}, model_path)
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_arguments(parser, list(CANDIDATES), list(DEFAULT_RUN), "start")
    parser.add_argument("--no-imports", action="store_true", help="skip the import profile")
    parser.add_argument("--decode-profile", action="store_true",
                        help="after the starts, one decode step of the default in-process (bench/decode_profile.py)")
    args = parser.parse_args(argv)
    known_candidates(parser, args, list(CANDIDATES))
    seeds = {CANDIDATES[c].seed_cache for c in args.candidates} - {"", *args.candidates}
    if seeds:
        parser.exit(2, f"--candidates: {', '.join(sorted(seeds))} must run too (others start on its cache)\n")
    return args


def rendered(name: str, common: dict[str, str], model_path: Path) -> tuple:
    """A candidate's command and env with the per-run parts fixed: equal for candidates that start the same way."""
    candidate = CANDIDATES[name]
    command = render_command(load_settings({**common, **formatted(candidate, model_path), "COMPILE_CACHE_DIR": "/cache",
                                            "PORT": "8000"}),
                             str(model_path))
    return tuple(command.argv), tuple(sorted({**command.env, **candidate.env}.items())), candidate.seed_cache


def run(args: argparse.Namespace) -> dict[str, Any]:
    import vllm

    model_path = fixture_weights()
    workdir = Path(tempfile.mkdtemp(prefix="bench-start-"))  # kept: the logs explain a failed run
    progress(f"logs in {workdir}")
    common = cpu_fixture(model_path)
    loads = {"c1": BenchLoad(args.c1_prompts, args.length, args.length, 1),
             "c8": BenchLoad(args.c8_prompts, args.length, args.length, 8)}
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"machine": cpu_facts(), "vllm": vllm.__version__,
                              "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                              "loads": {k: v.__dict__ for k, v in loads.items()}, "candidates": rows,
                              "logs": str(workdir), "notes": args.note}
    for name in distinct(args.candidates, lambda name: rendered(name, common, model_path)):
        rows.append(measure(name, common, model_path, workdir, loads))
        save_partial(result, workdir)
    if not args.no_imports:  # after the starts: they are what a short run must not miss
        progress("import profile")
        result["imports"] = {**profile(inherited_environment()), "bytecode": bytecode_coverage()}
        save_partial(result, workdir)
    if args.decode_profile and rows and rows[0]["name"] == BASELINE:
        result["decode_profile"] = step_profile(rows[0], common, model_path, workdir)
        save_partial(result, workdir)
    result["finished"] = time.strftime("%H:%M", time.gmtime())
    return result


def step_profile(row: dict[str, Any], common: dict[str, str], model_path: Path, workdir: Path) -> dict | None:
    """The default's decode step in-process, on its warm compile cache: the served TPOT minus this is the
    cost of the server's process layout (HTTP, IPC to the engine core, detokenising, streaming)."""
    warm = row["warm"]
    settings = load_settings({**common, "COMPILE_CACHE_DIR": str(workdir / row["name"] / "compile-cache")})
    env = render_command(settings, str(model_path)).env
    progress("decode profile of the default")
    return decode_profile({"name": row["name"], "_env": env, "argv": warm["argv"], "dtype": warm["dtype"]},
                          model_path, workdir)


def save_partial(result: dict[str, Any], workdir: Path) -> None:
    """What is measured so far, so a late failure loses no measurement (`--render` rewrites the report)."""
    (workdir / "partial.json").write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    args = parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        result.setdefault("finished", time.strftime("%H:%M", time.gmtime()))
        result["notes"] = [*result.get("notes", []), *args.note]
        if args.decode_profile:  # on the recorded run's own warm cache, which its logs folder keeps
            model_path = fixture_weights()
            result["decode_profile"] = step_profile(result["candidates"][0], cpu_fixture(model_path),
                                                    model_path, Path(result["logs"]))
    else:
        result = run(args)
    result["analysis"] = analyse(result)
    write_report(args.name, result, markdown(result))
    plot(result, RESULTS / f"{args.name}.png")
    progress(f"wrote {RESULTS / args.name}.json, .md, .png")


if __name__ == "__main__":
    main()
