#!/usr/bin/env python3
"""Plan the warm-cache build (`make image-warm`): one serve command per CPU instruction set.

    warm-plans.py OUT WEIGHTS "ISAS" RENDER...

RENDER is the command that runs `python -m entrypoint render --format json` in the image with
the deployment's own settings (make passes `docker compose run ... serve render ...`); each
plan adds `-e NAME=VALUE` options before its `render` word. A plan pins what depends on the
building host but not on the compiled model (KV cache size, thread binding) and folders under
the build's /tmp, so the plans, and with them Docker's cache of the warm stage, change only when
the model, vLLM or the settings that shape the graph do. ISAS names the instruction sets:

- native: the building CPU's own (its dtype and -march level, as the CPU profile renders them);
- avx2: an AVX2-only CPU as the CPU profile renders it there (float32, x86-64-v3), compiled
  through torch's ATEN_CPU_CAPABILITY=avx2 on any x86-64 CPU that has AVX2.

Writes OUT/plans/<isa>.json, links (or copies) the WEIGHTS folder to OUT/weights and copies the
build's two scripts beside them: OUT is the build's only input besides the runtime. Bad input exits 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from entrypoint.errors import UserError, run_cli  # noqa: E402 (standard library only)

# The build's RUN shares the host's network (Compose builds with `network: host`): a port that is
# neither a usual server's nor in Linux's ephemeral range (32768-60999), where test servers bind.
PINNED = {"COMPILE_CACHE_DIR": "/tmp/warm-cache", "MODEL_CACHE_DIR": "/tmp/models", "PORT": "28711",
          "HOST": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# What the CPU profile renders on such a CPU (entrypoint/cpu_tuning.py), and what makes torch
# compile for it here.
ISAS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "native": ({}, {}),
    "avx2": ({"DTYPE": "float32", "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3"}, {"ATEN_CPU_CAPABILITY": "avx2"}),
}


def plan(render: list[str], settings: dict[str, str], extra_env: dict[str, str]) -> dict:
    options = [word for name, value in {**PINNED, **settings}.items() for word in ("-e", f"{name}={value}")]
    # `compose run -e` options go before the service name, the word just before `render`.
    service = render.index("render") - 1
    done = subprocess.run(render[:service] + options + render[service:], capture_output=True, text=True)
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    if done.returncode != 0:
        raise UserError(f"warm-plans: the image's render failed (exit {done.returncode}): {last}")
    try:
        command = json.loads(done.stdout)
        command["env"].update(extra_env)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"warm-plans: the image's render printed no serve command as JSON: {last}") from None
    return command


def link_tree(source: Path, target: Path) -> None:
    """A copy of `source` made of hard links where the file system allows, else of copies."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def main(out: Path, weights: Path, isas: list[str], render: list[str]) -> int:
    unknown = [isa for isa in isas if isa not in ISAS]
    if not isas or unknown or "render" not in render:
        print(f"error: WARM_ISAS={' '.join(isas)!r} is not a list of {', '.join(ISAS)}; allowed: one or more of "
              f"{', '.join(ISAS)}", file=sys.stderr)
        return 2
    if "\x00" in str(weights) or not (weights / "config.json").is_file():
        print(f"error: WARM_WEIGHTS={str(weights)!r} holds no config.json; allowed: the folder of the model to warm on",
              file=sys.stderr)
        return 2
    shutil.rmtree(out, ignore_errors=True)
    (out / "plans").mkdir(parents=True)
    link_tree(weights, out / "weights")
    for isa in dict.fromkeys(isas):
        settings, extra_env = ISAS[isa]
        (out / "plans" / f"{isa}.json").write_text(json.dumps(plan(render, settings, extra_env), indent=2) + "\n")
    shutil.copy(ROOT / "scripts" / "warm-compile-cache.py", out)
    shutil.copy(ROOT / "entrypoint" / "inductor_isa.py", out)
    print(f"warm-plans: {', '.join(dict.fromkeys(isas))} in {out / 'plans'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 5:
        print(f"usage: {sys.argv[0]} OUT WEIGHTS \"ISAS\" RENDER...", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_cli(lambda: main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(), sys.argv[4:])))
