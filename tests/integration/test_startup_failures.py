"""Known start failures provoked on real vLLM CPU: one line naming the setting, also in the termination log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import FAST_CPU, ROOT, child_env
from tests.support.net import free_port

pytestmark = pytest.mark.integration


def model_without_weights(fixture: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).symlink_to(fixture / name)
    return folder


def model_with_unknown_architecture(fixture: Path, folder: Path) -> Path:
    folder.mkdir()
    for item in fixture.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((fixture / "config.json").read_text())
    config["architectures"] = ["FooBarForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


CASES = {
    "context too long": ({"MAX_MODEL_LEN": "65536"}, None, "MAX_MODEL_LEN=65536 is longer than the model allows"),
    "bad extra flag": ({"EXTRA_ARGS": "--no-such-flag 3"}, None, "fix or remove it in EXTRA_ARGS"),
    "missing weights": ({}, model_without_weights, "MODEL_SOURCE points at an incomplete model folder"),
    "unknown architecture": ({}, model_with_unknown_architecture, "cannot serve the architecture 'FooBarForCausalLM'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failed_start_is_explained(case, fixture_model, tmp_path):
    overrides, make_model, expected = CASES[case]
    model = make_model(fixture_model, tmp_path / "model") if make_model else fixture_model
    termination_log = tmp_path / "termination-log"
    env = child_env(**{**FAST_CPU, "HOST": "127.0.0.1", "PORT": str(free_port()), "METRICS_PORT": str(free_port()),
                       "MODEL_SOURCE": str(model),
                       "MODEL_CACHE_DIR": str(tmp_path / "cache"), "STATE_DIR": str(tmp_path / "state"),
                       "TERMINATION_LOG": str(termination_log), **overrides})
    done = subprocess.run([sys.executable, "-m", "entrypoint", "serve"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: vLLM could not start: ") and expected in line, done.stderr[-2000:]
    assert termination_log.read_text().strip() == line.removeprefix("error: ")
