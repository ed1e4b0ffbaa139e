"""Where the test bed keeps things: the cross-run cache root (the venv, the fixture weights,
vLLM's compile cache) and the fixture weights' builder. The shell's copy of the cache root
is scripts/paths.sh; a unit test holds the two equal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_CACHE = Path(os.environ.get("BUNDLE_CACHE") or Path.home() / ".cache" / "ascend-serve-bundle")
FIXTURE_MODELS = BUNDLE_CACHE / "models"  # where the builder caches the fixture weights
COMPILE_CACHE = BUNDLE_CACHE / "vllm-compile"  # vLLM's compile cache, shared by tests and benchmarks
FIXTURE_BUILDER = ROOT / "scripts" / "testbed" / "build_fixture_model.py"


def fixture_weights(build: bool = True) -> Path:
    """The real Gemma 3 270M test-bed weights, built first (once; cached by their inputs) unless
    `build` is false, when the path is only worked out. FIXTURE_WEIGHTS names a folder already
    built by the project venv, for a Python that lacks the builder's packages (the guide's vLLM 0.18 venv)."""
    if os.environ.get("FIXTURE_WEIGHTS"):
        return Path(os.environ["FIXTURE_WEIGHTS"])
    done = subprocess.run([sys.executable, str(FIXTURE_BUILDER), *([] if build else ["--print-path"])],
                          check=True, capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1])
