"""Time-to-ready of `entrypoint serve` against plain vLLM on the same model, in one run.

Both start the same rendered command (the CPU render of the default settings, the
real serving profile, on the test-bed Gemma 3 270M weights with the fixture profile's
smoke check): plain vLLM is ready when /health is 200 and /v1/models lists the model;
the bundle is ready when its ready marker appears (that includes its own readiness wait and the smoke request).
Starts alternate so both see the same warm compile cache. It also times
`python -m healthcheck ready` against the ready bundle, interpreter start included.

Writes bench/results/startup.json and startup.md. Usage:
    python bench/startup.py [--rounds 2] [--probes 50] [--model-path DIR] [--extra KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    bundle_server,
    cpu_facts,
    server,
    wait_bundle,
    wait_vllm,
    write_report,
)
from entrypoint.render import render_command  # noqa: E402
from entrypoint.resolver import load_settings  # noqa: E402
from entrypoint.settings import inherited_environment  # noqa: E402
from entrypoint.state import StateDir  # noqa: E402
from testbed.fixture import served_fixture  # noqa: E402
from testbed.net import free_port  # noqa: E402
from testbed.paths import BUNDLE_CACHE, COMPILE_CACHE  # noqa: E402
from verification.load import percentile  # noqa: E402

POLL_SECONDS = 0.1  # often: these are the times being compared


def plain_vllm(environ: dict[str, str], workdir: Path) -> float:
    """Start the rendered command directly and time it to ready."""
    settings = load_settings(environ)
    command = render_command(settings, environ["MODEL_SOURCE"])
    log = workdir / "plain.log"
    with server(command.argv, {**inherited_environment(), **command.env}, log) as child:
        return wait_vllm(settings, child, log, POLL_SECONDS)


def bundle(environ: dict[str, str], workdir: Path, probes: int) -> dict[str, object]:
    """Start the supervisor, time it to its ready marker and split the time into its parts;
    then time `healthcheck ready` calls against it."""
    state_dir = workdir / "state"
    log = workdir / "bundle.log"
    env = {**inherited_environment(), **environ, "STATE_DIR": str(state_dir)}
    launched = time.time()
    with bundle_server(env, log) as child:
        took = wait_bundle(state_dir, child, log, POLL_SECONDS)
        files = StateDir(state_dir)
        state, ready = files.state() or {}, files.ready() or {}
        return {"bundle_s": round(took, 2),
                "before_vllm_s": round(state["server_started_at"] - launched, 2),
                "vllm_start_s": round(ready["server_answered_at"] - state["server_started_at"], 2),
                "smoke_s": round(ready["at"] - ready["server_answered_at"], 2),
                "probe_ready_s": [probe_seconds(state_dir) for _ in range(probes)]}


def probe_seconds(state_dir: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "healthcheck", "ready", "--state-dir", str(state_dir)], cwd=ROOT,
                   check=True, capture_output=True)
    return time.monotonic() - started


def serve_environ(model_path: str | None, extra: list[str]) -> dict[str, str]:
    """The settings both starts serve with. The fixture weights are a base model that never
    answers the default smoke check ("Paris"), so they come with the fixture's profile."""
    model = {"MODEL_SOURCE": model_path} if model_path else served_fixture()
    return {"PLATFORM": "cpu", "HOST": "127.0.0.1", **model, "MODEL_CACHE_DIR": str(BUNDLE_CACHE / "bench-model-cache"),
            "COMPILE_CACHE_DIR": str(COMPILE_CACHE), **dict(kv.split("=", 1) for kv in extra)}


def run(args: argparse.Namespace) -> dict[str, object]:
    environ = serve_environ(args.model_path, args.extra)
    rounds = []
    for index in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            # Alternate who goes first, so neither always meets the warmer page cache.
            order = ("plain", "bundle") if index % 2 == 0 else ("bundle", "plain")
            result: dict[str, object] = {"first": order[0]}
            for who in order:
                environ["PORT"], environ["METRICS_PORT"] = str(free_port()), str(free_port())
                if who == "plain":
                    result["plain_vllm_s"] = round(plain_vllm(environ, Path(tmp)), 2)
                else:
                    result.update(bundle(environ, Path(tmp), args.probes))
        result["ab_difference_s"] = round(result["bundle_s"] - result["plain_vllm_s"], 2)  # type: ignore[operator]
        result["overhead_s"] = round(result["bundle_s"] - result["vllm_start_s"], 2)  # type: ignore[operator]
        rounds.append(result)
        print(f"round {index + 1}: {result}", file=sys.stderr)
    probes = [t for r in rounds for t in r.pop("probe_ready_s")]  # type: ignore[attr-defined]
    return {"machine": cpu_facts(), "settings": {k: v for k, v in environ.items() if k not in ("PORT", "METRICS_PORT")},
            "rounds": rounds,
            "overhead_s_median": round(statistics.median(r["overhead_s"] for r in rounds), 2),
            "ab_difference_s_median": round(statistics.median(r["ab_difference_s"] for r in rounds), 2),
            "healthcheck_ready_ms": {"n": len(probes), "p50": round(percentile(probes, 50) * 1000, 1),
                                     "p95": round(percentile(probes, 95) * 1000, 1)},
            "targets": {"overhead_s": 3.0, "healthcheck_ready_p95_ms": 150.0}}


def markdown(result: dict) -> str:
    rows = "\n".join(f"| {i + 1} ({r['first']} first) | {r['plain_vllm_s']} | {r['bundle_s']} | {r['ab_difference_s']} "
                     f"| {r['before_vllm_s']} | {r['vllm_start_s']} | {r['smoke_s']} | {r['overhead_s']} |"
                     for i, r in enumerate(result["rounds"]))
    probe = result["healthcheck_ready_ms"]
    probe_target = result["targets"]["healthcheck_ready_p95_ms"]
    machine = result["machine"]
    return f"""# Startup benchmark

Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, flags {', '.join(machine['flags'])}.
Settings: `{' '.join(f'{k}={v}' for k, v in result['settings'].items())}` (all else: the CPU render's defaults).

Time to ready, seconds. Plain vLLM: /health 200 and the model listed. Bundle: ready
marker written, i.e. readiness seen *and* the smoke chat completion answered. The
bundle's time splits into: before vLLM is spawned (interpreter, settings, preflight,
weights check), vLLM's own start as the supervisor saw it, and the smoke check.
*Overhead* is everything but vLLM's own start; the A/B difference of two separate
starts also carries vLLM's start-to-start variance, which on 2 cores is larger than the
overhead itself.

| round | plain vLLM | entrypoint serve | A/B difference | before vLLM | vLLM start | smoke | overhead |
|---|---|---|---|---|---|---|---|
{rows}

Median overhead: **{result['overhead_s_median']} s** (target: under {result['targets']['overhead_s']} s);
median A/B difference: {result['ab_difference_s_median']} s.

`python -m healthcheck ready` wall time, interpreter start included, {probe['n']} calls:
p50 **{probe['p50']} ms**, p95 **{probe['p95']} ms** (target: p95 under {probe_target} ms).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--model-path")
    parser.add_argument("--extra", nargs="*", default=[], help="more settings as KEY=VALUE")
    args = parser.parse_args()
    result = run(args)
    write_report("startup", result, markdown(result))


if __name__ == "__main__":
    main()
