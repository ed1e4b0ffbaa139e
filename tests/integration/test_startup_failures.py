"""Known start failures provoked on real vLLM CPU: one line naming the setting, also in the termination log.

The four cases are independent and each is mostly one interpreter importing vLLM, which
uses one core: they start together and each test checks its own case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.fixture import FAST_CPU
from testbed.net import free_port
from testbed.servers import child_env
from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.starts_vllm]
FAILURE_SECONDS = 600  # only bounds a hang


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


CASES: dict[str, tuple[dict[str, str], Callable[[Path, Path], Path] | None, str]] = {
    "context too long": ({"MAX_MODEL_LEN": "65536"}, None, "MAX_MODEL_LEN=65536 is longer than the model allows"),
    "bad extra flag": ({"EXTRA_ARGS": "--no-such-flag 3"}, None, "fix or remove it in EXTRA_ARGS"),
    "missing weights": ({}, model_without_weights, "MODEL_SOURCE points at an incomplete model folder"),
    "unknown architecture": ({}, model_with_unknown_architecture, "cannot serve the architecture 'FooBarForCausalLM'"),
}


@dataclass
class FailedStart:
    """One `entrypoint serve` expected to fail, running in the background."""

    process: subprocess.Popen
    stderr: Path  # a file, not a pipe: a full pipe nobody reads yet would stall the process
    termination_log: Path
    expected: str

    def finish(self) -> tuple[int, str]:
        self.process.wait(timeout=FAILURE_SECONDS)
        return self.process.returncode, self.stderr.read_text(errors="replace")


def start_failing(case: str, fixture_model: Path, tmp: Path) -> FailedStart:
    overrides, make_model, expected = CASES[case]
    model = make_model(fixture_model, tmp / "model") if make_model else fixture_model
    termination_log = tmp / "termination-log"
    env = child_env(**{**FAST_CPU, "HOST": "127.0.0.1", "PORT": str(free_port()), "METRICS_PORT": str(free_port()),
                       "MODEL_SOURCE": str(model),
                       "MODEL_CACHE_DIR": str(tmp / "cache"), "STATE_DIR": str(tmp / "state"),
                       "TERMINATION_LOG": str(termination_log), **overrides})
    stderr = tmp / "stderr.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "entrypoint", "serve"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=sink)
    return FailedStart(process, stderr, termination_log, expected)


@pytest.fixture(scope="module")
def failed_starts(fixture_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FailedStart]]:
    started = {case: start_failing(case, fixture_model, tmp_path_factory.mktemp("failed-start"))
               for case in CASES}
    yield started
    for start in started.values():
        if start.process.poll() is None:
            start.process.kill()
        start.process.wait()


@pytest.mark.parametrize("case", list(CASES))
def test_failed_start_is_explained(case: str, failed_starts: dict[str, FailedStart]) -> None:
    start = failed_starts[case]
    returncode, stderr = start.finish()
    assert returncode == 1
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: vLLM could not start: ") and start.expected in line, stderr[-2000:]
    assert start.termination_log.read_text().strip() == line.removeprefix("error: ")
