#!/usr/bin/env python3
"""Warm Inductor's compile cache during an image build (the Dockerfile's warm-cache stage).

    warm-compile-cache.py PLANS OUT

Each PLANS/<name>.json is a serve command as `python -m entrypoint render --format json`
prints it ({"argv": [...], "env": {...}}), planned by scripts/warm-plans.py for one CPU
instruction set. For each: ask torch which ISA it compiles for with that env (the key,
inductor_isa.py beside this script; a key warmed by an earlier plan is skipped), start vLLM,
wait until it answers a completion (its start compiled the model; the request runs what the
start's warm-up did not), stop it, then file its compile cache (the env's VLLM_CACHE_ROOT) as
OUT/<key>. Standard library only: it runs on the image's runtime before the bundle is in it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT = 3600.0  # a cold compile on a slow 2-core machine takes minutes; bounds a hang only
STOP_GRACE = 60.0
HERE = Path(__file__).resolve().parent


def flag(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


def answers(url: str, model: str) -> bool:
    """Whether the server completes a short prompt (False while it is still starting)."""
    body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 4}).encode()
    request = urllib.request.Request(f"{url}/v1/completions", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(child: subprocess.Popen) -> None:
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def warm(name: str, plan: dict, log: Path) -> None:
    """Start the plan's server, wait until it answers, stop it; exit 1 if it dies first."""
    argv, env = plan["argv"], {**os.environ, **plan["env"]}
    url = f"http://127.0.0.1:{flag(argv, '--port', '8000')}"
    model = flag(argv, "--served-model-name", flag(argv, "--model", ""))
    began = time.monotonic()
    with log.open("wb") as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not answers(url, model):
            if child.poll() is not None or time.monotonic() - began > READY_TIMEOUT:
                sys.stderr.write(log.read_text(errors="replace")[-6000:])
                sys.exit(f"warm-compile-cache: {name}: vLLM did not start (exit {child.poll()})")
            time.sleep(2)
    finally:
        stop(child)
    print(f"warm-compile-cache: {name}: answered after {time.monotonic() - began:.0f} s", flush=True)


def isa_key(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, str(HERE / "inductor_isa.py")], env={**os.environ, **env},
                          capture_output=True, text=True, check=True, timeout=300)
    return done.stdout.strip()


def main(plans: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(plans.glob("*.json")):
        plan = json.loads(path.read_text())
        key = isa_key(plan["env"])
        if (out / key).exists():  # e.g. native and avx2 on an AVX2-only builder
            print(f"warm-compile-cache: {path.stem}: {key} is warmed by another plan already", flush=True)
            continue
        cache = Path(plan["env"]["VLLM_CACHE_ROOT"])
        shutil.rmtree(cache, ignore_errors=True)
        warm(path.stem, plan, Path("/tmp") / f"{path.stem}.log")
        shutil.move(str(cache), out / key)
        readable_by_all(out / key)
        print(f"warm-compile-cache: {path.stem}: filed as {key}", flush=True)


def readable_by_all(folder: Path) -> None:
    """vLLM writes some cache files for its own user only; the image's user copies them at start."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
