"""The CPU image: size, build times (cold, no change, code-only change) and time-to-healthy
of the container against the native runtime on the same weights and settings.

Needs a Docker engine (`eval "$(scripts/testbed/docker-engine.sh start)"`) and the base image
(`scripts/testbed/base-image.sh debian:bookworm-slim`); `make bench-image` does both.
Writes bench/results/image.json and image.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import bundle_server, cpu_facts, wait_until, write_report  # noqa: E402
from entrypoint.resolver import CONTAINER_CACHE_DIR  # noqa: E402
from testbed.fixture import fixture_weights, served_fixture  # noqa: E402
from testbed.net import free_port  # noqa: E402

IMAGE = "ascend-serve-bundle:cpu"
CONTAINER_WEIGHTS = "/fixture-weights"  # where a container sees the fixture weights
TOUCH = ROOT / "entrypoint" / "_bench_code_change.py"


def timed(command: list[str], **kwargs) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, **kwargs)
    return time.monotonic() - started


def build() -> float:
    """`make build PLATFORM=cpu`, timed."""
    return timed(["make", "--no-print-directory", "build", "PLATFORM=cpu"], stdout=subprocess.DEVNULL)


def build_times() -> dict[str, float]:
    """Cold (no layer cache), unchanged, and after a change to the bundle's code only."""
    subprocess.run(["docker", "builder", "prune", "--all", "--force"], check=True, capture_output=True)
    subprocess.run(["docker", "image", "rm", "--force", IMAGE], capture_output=True)
    cold = build()
    unchanged = build()
    TOUCH.write_text(f"# a code-only change for bench/image.py at {time.time()}\n")
    try:
        code_only = build()
    finally:
        TOUCH.unlink()
    build()  # leave the image as the checkout builds it
    return {"cold_s": round(cold, 1), "unchanged_s": round(unchanged, 1), "code_only_change_s": round(code_only, 1)}


def image_size_gb() -> float:
    size = subprocess.run(["docker", "image", "inspect", IMAGE, "--format", "{{.Size}}"], check=True,
                          capture_output=True, text=True).stdout
    return round(int(size) / 1e9, 2)


def wait_ready(probe: list[str], alive) -> float:
    """Seconds until the probe command exits 0."""
    return wait_until(lambda: subprocess.run(probe, capture_output=True).returncode == 0, alive,
                      " ".join(probe), poll=0.5)


def container_settings(env: tuple[str, ...] = ()) -> dict[str, str]:
    """The settings a container starts with beyond the image's own: the fixture, then `env` (KEY=VALUE)."""
    return {**served_fixture(CONTAINER_WEIGHTS), **dict(item.split("=", 1) for item in env)}


def container_start(weights: str, cache_volume: str, image: str = IMAGE,
                    env: tuple[str, ...] = ()) -> tuple[float, str]:
    """`docker run` of the image until `healthcheck ready` passes inside it: seconds, and the container's log."""
    name = f"bench-image-{os.getpid()}"
    started = time.monotonic()
    subprocess.run(["docker", "run", "-d", "--name", name, "--shm-size", "1g", "-p", f"127.0.0.1:{free_port()}:8000",
                    "-v", f"{weights}:{CONTAINER_WEIGHTS}:ro", "-v", f"{cache_volume}:{CONTAINER_CACHE_DIR}",
                    *(word for key, value in container_settings(env).items() for word in ("-e", f"{key}={value}")),
                    image], check=True, capture_output=True)
    try:
        def alive() -> bool:
            state = subprocess.run(["docker", "inspect", name, "--format", "{{.State.Running}}"],
                                   capture_output=True, text=True).stdout.strip()
            return state == "true"
        wait_ready(["docker", "exec", name, "python", "-m", "healthcheck", "ready"], alive)
        seconds = time.monotonic() - started
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        return seconds, logs.stdout + logs.stderr
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def native_settings(weights: str, cache_dir: Path, state: Path) -> dict[str, str]:
    """The native server's settings: the fixture on the CPU, on loopback."""
    return {"PLATFORM": "cpu", "HOST": "127.0.0.1", "PORT": str(free_port()), "METRICS_PORT": str(free_port()),
            **served_fixture(weights), "MODEL_CACHE_DIR": str(cache_dir), "STATE_DIR": str(state)}


def native_ready_s(weights: str, cache_dir: Path) -> float:
    """`python -m entrypoint serve` from the project venv until `healthcheck ready` passes."""
    state = Path(tempfile.mkdtemp(prefix="bench-native-"))
    env = {**os.environ, **native_settings(weights, cache_dir, state)}
    started = time.monotonic()
    try:
        with bundle_server(env, state / "serve.log") as server:
            wait_ready([sys.executable, "-m", "healthcheck", "ready", "--state-dir", str(state)],
                       lambda: server.poll() is None)
            return time.monotonic() - started
    finally:
        shutil.rmtree(state, ignore_errors=True)


def ready_times(rounds: int) -> dict[str, list[float]]:
    """Both runtimes, each with its own compile cache: the first start is cold, the rest warm."""
    weights = str(fixture_weights())
    volume = f"bench-image-cache-{os.getpid()}"
    native_cache = Path(tempfile.mkdtemp(prefix="bench-native-cache-"))
    times: dict[str, list[float]] = {"container_s": [], "native_s": []}
    try:
        for _ in range(rounds):
            times["container_s"].append(round(container_start(weights, volume)[0], 1))
            times["native_s"].append(round(native_ready_s(weights, native_cache), 1))
            print(f"ready: {times}", file=sys.stderr)
    finally:
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)
        shutil.rmtree(native_cache, ignore_errors=True)
    return times


def markdown(result: dict) -> str:
    b, r = result["build"], result["ready"]
    rows = "\n".join(f"| {i + 1}{' (cold compile cache)' if i == 0 else ''} | {c} | {n} | {round(c - n, 1)} |"
                     for i, (c, n) in enumerate(zip(r["container_s"], r["native_s"], strict=True)))
    m = result["machine"]
    return f"""# Image benchmark

Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, flags {', '.join(m['flags'])}.

Image `{IMAGE}`: **{result['image_size_gb']} GB**.

| build | seconds |
|---|---|
| cold (no layer cache; packages from the registries) | {b['cold_s']} |
| nothing changed | {b['unchanged_s']} |
| a change to the bundle's code only | **{b['code_only_change_s']}** (target: under 30) |

Time to healthy (`healthcheck ready` passes), same weights (the test-bed Gemma 3 270M)
and the CPU render's default settings; each runtime keeps its own compile cache, so
round 1 is a cold start and the rest are warm:

| round | container | native | container − native |
|---|---|---|---|
{rows}

Target: the container adds under 5 s over the native runtime.
"""


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    result = {"machine": cpu_facts(), "build": build_times(), "image_size_gb": image_size_gb(),
              "ready": ready_times(rounds)}
    write_report("image", result, markdown(result))


if __name__ == "__main__":
    main()
