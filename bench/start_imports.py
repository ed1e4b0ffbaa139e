"""What importing vLLM's entry points costs each of its processes, and what bytecode saves.

Each process of a CPU start (API server, engine core, worker) is a fresh interpreter that
imports torch and vLLM again. `python -X importtime` names the packages whose modules take the time;
the same import with the bytecode cache bypassed (PYTHONPYCACHEPREFIX on an empty folder, no
writes) shows what precompiled .pyc files in the venv or image save.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from typing import Any

# module -> the process that imports it first thing
ENTRY_POINTS = {
    "vllm.entrypoints.openai.api_server": "API server",
    "vllm.v1.engine.core": "engine core",
    "vllm.v1.worker.cpu_worker": "worker",
}
IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def top_packages(stderr: str, top: int) -> tuple[float, list[dict[str, Any]]]:
    """Total seconds and the costliest top-level packages by their modules' own (self) import time."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        if match := IMPORTTIME.match(line):
            package = match.group(4).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1e6
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return sum(totals.values()), [{"package": name, "s": round(s, 2)} for name, s in ranked[:top]]


def timed_import(module: str, env: dict[str, str], *flags: str) -> tuple[float, str]:
    """Wall seconds of `python <flags> -c 'import module'` and its stderr."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, *flags, "-c", f"import {module}"], env=env, capture_output=True,
                          text=True, check=True)
    return time.monotonic() - started, done.stderr


def profile(env: dict[str, str], top: int = 8) -> dict[str, Any]:
    """Per entry point: wall time of a plain import, its top packages, and the import without bytecode."""
    result: dict[str, Any] = {}
    for module, process in ENTRY_POINTS.items():
        timed_import(module, env)  # page cache and bytecode warm, as on a restart
        wall, _ = timed_import(module, env)
        _, stderr = timed_import(module, env, "-X", "importtime")
        total, packages = top_packages(stderr, top)
        result[module] = {"process": process, "wall_s": round(wall, 2), "importtime_s": round(total, 2),
                          "top": packages}
    with tempfile.TemporaryDirectory() as empty:
        # An empty pycache prefix and no writes: every module compiled from source, as in a venv or
        # image installed without bytecode (pip --no-compile, PYTHONDONTWRITEBYTECODE).
        cold, _ = timed_import("vllm.entrypoints.openai.api_server",
                               {**env, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"})
    result["api_server_without_bytecode_s"] = round(cold, 2)
    return result


def bytecode_coverage(packages: tuple[str, ...] = ("vllm", "torch", "transformers")) -> dict[str, Any]:
    """Per package: .py files and how many have a .pyc for this interpreter beside them."""
    import importlib.util
    from pathlib import Path

    tag = sys.implementation.cache_tag
    coverage: dict[str, Any] = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        if not spec or not spec.submodule_search_locations:
            continue
        sources = list(Path(next(iter(spec.submodule_search_locations))).rglob("*.py"))
        compiled = sum(1 for s in sources if (s.parent / "__pycache__" / f"{s.stem}.{tag}.pyc").exists())
        coverage[name] = {"py": len(sources), "pyc": compiled}
    return coverage
