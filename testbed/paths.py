"""Where the test bed keeps things across runs. The cache root is defined once, in
scripts/paths.sh; Python reads it from there as the Makefile does (a BUNDLE_CACHE in the
environment wins, as it does for the shell)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def from_paths_sh(name: str) -> str:
    """A variable of scripts/paths.sh, as the shell that sources it sees it."""
    done = subprocess.run(["bash", "-c", f'. scripts/paths.sh && printf %s "${name}"'], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return done.stdout


BUNDLE_CACHE = Path(from_paths_sh("BUNDLE_CACHE"))
COMPILE_CACHE = BUNDLE_CACHE / "vllm-compile"  # vLLM's compile cache, shared by tests and benchmarks
