"""A first container start on a fresh volume: the plain CPU image (cold) against the warm image
(`make image-warm`), for this CPU and for an AVX2-only CPU, in one run.

Each start is a `docker run` on a new cache volume (or, for "restart", the warm image's volume
again) until `healthcheck ready` passes inside the container, on the test-bed weights with the
CPU profile's default settings. The AVX2 rows run with what an AVX2-only CPU renders (float32,
x86-64-v3) and torch told to compile for AVX2 (ATEN_CPU_CAPABILITY=avx2): the code path and
cache an AVX2 host takes, at this CPU's speed. Each row also keeps vLLM's own "init engine"
seconds (its profile run, warm-up compile and KV cache) and the supervisor's compile-cache line.

Needs the images: `make image-warm TESTBED=1 PLATFORM=cpu` (it builds both);
`make bench-warm-image` does that first. Writes bench/results/start-warm-image.{json,md}.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_facts, write_report  # noqa: E402
from bench.image import IMAGE, container_start  # noqa: E402
from bench.start_phases import ENGINE_INIT  # noqa: E402
from testbed.fixture import fixture_weights  # noqa: E402

WARM_IMAGE = "ascend-serve-bundle:cpu-warm"
AVX2 = ("DTYPE=float32", "TORCHINDUCTOR_CPP_MARCH=x86-64-v3", "ATEN_CPU_CAPABILITY=avx2")
# (row, image, env, volume: a new one, or the name of an earlier row whose volume it reuses)
STARTS = (("cold", IMAGE, (), ""), ("shipped", WARM_IMAGE, (), ""), ("restart", WARM_IMAGE, (), "shipped"),
          ("avx2 cold", IMAGE, AVX2, ""), ("avx2 shipped", WARM_IMAGE, AVX2, ""))
SEED_LINE = re.compile(r"compile cache: (.*)")


def one(weights: str, image: str, env: tuple[str, ...], volume: str) -> dict:
    seconds, logs = container_start(weights, volume, image, env)
    init = ENGINE_INIT.search(logs)
    seed = SEED_LINE.search(logs)
    return {"ready_s": round(seconds, 1), "init_engine_s": float(init.group(1)) if init else None,
            "compile_cache": seed.group(1) if seed else ""}


def run() -> dict:
    weights = str(fixture_weights())
    volumes: dict[str, str] = {}
    rows = []
    try:
        for name, image, env, reuse in STARTS:
            volume = volumes[reuse] if reuse else f"bench-warm-{os.getpid()}-{len(volumes)}"
            volumes.setdefault(name, volume)
            rows.append({"start": name, "image": image, "env": list(env), **one(weights, image, env, volume)})
            print(f"[warm-image] {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        subprocess.run(["docker", "volume", "rm", "--force", *set(volumes.values())], capture_output=True)
    return {"machine": cpu_facts(), "starts": rows}


def markdown(result: dict) -> str:
    m = result["machine"]
    by = {row["start"]: row for row in result["starts"]}
    lines = [
        "# A first container start on a fresh volume: plain image against the warm image", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, flags {', '.join(m['flags'])}.", "",
        "`docker run` until `healthcheck ready` passes inside the container, test-bed Gemma 3 270M, the CPU "
        "profile's defaults, one start at a time. *cold*: the plain image on a new volume (what every new "
        "volume paid before); *shipped*: the warm image (`make image-warm`) on a new volume; *restart*: the "
        "warm image on the shipped start's volume again. The avx2 rows render and compile as an AVX2-only "
        "CPU does (float32, x86-64-v3, ATEN_CPU_CAPABILITY=avx2), at this CPU's speed.", "",
        "| start | ready (s) | vLLM init engine (s) | compile cache |", "|---|---|---|---|",
        *(f"| {r['start']} | {r['ready_s']} | {r['init_engine_s']} | {r['compile_cache'] or '-'} |"
          for r in result["starts"]), ""]
    for isa, cold, shipped in (("this CPU", "cold", "shipped"), ("AVX2", "avx2 cold", "avx2 shipped")):
        if cold in by and shipped in by:
            saved = by[cold]["ready_s"] - by[shipped]["ready_s"]
            lines.append(f"- {isa}: the warm image's first start is ready {saved:.1f} s sooner than the plain "
                         f"image's ({by[shipped]['ready_s']} against {by[cold]['ready_s']} s).")
    lines += ["", "Reproduce: `make bench-warm-image`.", ""]
    return "\n".join(lines)


def main() -> None:
    result = run()
    write_report("start-warm-image", result, markdown(result))


if __name__ == "__main__":
    main()
