"""The fixture: the real Gemma 3 270M weights the test bed serves, and how to serve them.

Said once here for the tests, the benchmarks and the routed deployment: the weights (built by
scripts/testbed/build_fixture_model.py, cached by their inputs), their model profile and the
eager CPU options that keep a start near a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed.paths import BUNDLE_CACHE, ROOT

FIXTURE_MODELS = BUNDLE_CACHE / "models"  # where the builder caches the fixture weights
FIXTURE_BUILDER = ROOT / "scripts" / "testbed" / "build_fixture_model.py"
MODEL_ID = "google/gemma-3-270m-it"  # the name the loopback hub serves the weights under
SERVED_NAME = "gemma-3-270m-it"
# The weights are the base model, not the -it tune: the default profile's smoke check waits for
# an answer ("Paris") they never give; their own profile expects none.
PROFILE = "gemma-3-270m-fixture"
# float32 (fast on CPUs without native bf16), eager mode and a small batch budget keep a start
# near a minute; the serve path is the same as the default's.
EAGER_CPU = {"DTYPE": "float32", "ENFORCE_EAGER": "true", "MAX_MODEL_LEN": "4096", "MAX_NUM_BATCHED_TOKENS": "512",
             "VLLM_CPU_KVCACHE_SPACE": "1"}
# The fixture's fast CPU server, as the integration tests and the monitoring bench start it.
FAST_CPU = {"PLATFORM": "cpu", "MODEL_PROFILE": PROFILE, **EAGER_CPU, "STOP_GRACE_PERIOD": "30"}


def fixture_weights(build: bool = True) -> Path:
    """The real Gemma 3 270M test-bed weights, built first (once; cached by their inputs) unless
    `build` is false, when the path is only worked out. FIXTURE_WEIGHTS names a folder already
    built by the project venv, for a Python that lacks the builder's packages (the guide's vLLM 0.18 venv)."""
    if os.environ.get("FIXTURE_WEIGHTS"):
        return Path(os.environ["FIXTURE_WEIGHTS"])
    done = subprocess.run([sys.executable, str(FIXTURE_BUILDER), *([] if build else ["--print-path"])],
                          check=True, capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1])


def served_fixture(weights: Path | str | None = None) -> dict[str, str]:
    """The settings that serve the fixture weights (built if need be) from a folder, with their profile."""
    return {"MODEL_SOURCE": str(weights or fixture_weights()), "MODEL_PROFILE": PROFILE}
