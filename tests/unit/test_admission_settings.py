"""The API guard's settings: admission bounds derived from MAX_NUM_SEQS, bad values in one line,
and the render that loads the guard only when a key or admission control asks for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.errors import SettingsError
from entrypoint.render import GUARD_MIDDLEWARE, render_command
from entrypoint.resolver import load_settings
from entrypoint.supervisor import as_supervisor, bundle_importable

ROOT = Path(__file__).parents[2]
CPU = {"PLATFORM": "cpu"}
KEY = "sk-admit-4e5f"


def guard_config(environ: dict[str, str]) -> dict | None:
    command = render_command(load_settings({**CPU, **environ}), "/models/m")
    if "BUNDLE_API_GUARD" not in command.env:
        assert GUARD_MIDDLEWARE not in command.argv
        return None
    assert command.argv[command.argv.index("--middleware") + 1] == GUARD_MIDDLEWARE
    return json.loads(command.env["BUNDLE_API_GUARD"])


def test_defaults_come_from_max_num_seqs():
    config = guard_config({"ADMISSION_CONTROL": "true", "MAX_NUM_SEQS": "12", "MAX_NUM_BATCHED_TOKENS": "2048"})
    assert config == {"key_file": None, "metrics_need_key": False,
                      "admission": {"max_running": 12, "max_queued": 12, "queue_timeout": 10.0, "max_per_key": None}}


def test_explicit_bounds_win():
    config = guard_config({"ADMISSION_CONTROL": "true", "API_KEY": KEY, "ADMIT_MAX_RUNNING": "4",
                           "ADMIT_MAX_QUEUED": "0", "ADMIT_QUEUE_TIMEOUT": "2.5", "ADMIT_MAX_PER_KEY": "2"})
    assert config is not None
    assert config["admission"] == {"max_running": 4, "max_queued": 0, "queue_timeout": 2.5, "max_per_key": 2}


def test_no_key_and_no_admission_renders_no_guard():
    assert guard_config({}) is None
    assert guard_config({"METRICS_NEED_KEY": "true"}) is None


@pytest.mark.parametrize(("environ", "start"), [
    ({"ADMISSION_CONTROL": "maybe"}, "ADMISSION_CONTROL='maybe'"),
    ({"ADMISSION_CONTROL": "true", "ADMIT_MAX_RUNNING": "0"}, "ADMIT_MAX_RUNNING='0'"),
    ({"ADMISSION_CONTROL": "true", "ADMIT_MAX_QUEUED": "-1"}, "ADMIT_MAX_QUEUED='-1'"),
    ({"ADMISSION_CONTROL": "true", "ADMIT_QUEUE_TIMEOUT": "0"}, "ADMIT_QUEUE_TIMEOUT='0'"),
    ({"ADMISSION_CONTROL": "true", "ADMIT_QUEUE_TIMEOUT": "1e9"}, "ADMIT_QUEUE_TIMEOUT='1e9'"),
    ({"ADMISSION_CONTROL": "true", "ADMIT_MAX_PER_KEY": "2"}, "ADMIT_MAX_PER_KEY=2: there is no API key"),
    ({"ADMIT_MAX_RUNNING": "8"}, "ADMIT_MAX_RUNNING=8: has no effect with ADMISSION_CONTROL=false"),
    ({"METRICS_NEED_KEY": "yes please"}, "METRICS_NEED_KEY='yes please'"),
])
def test_a_bad_value_is_one_line(environ, start):
    with pytest.raises(SettingsError) as caught:
        load_settings({**CPU, **environ})
    (line,) = caught.value.lines
    assert line.startswith(start) and "allowed" in line


def test_a_bad_value_exits_2_with_one_line(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **CPU,
           "ADMISSION_CONTROL": "true", "ADMIT_MAX_RUNNING": "lots"}
    done = subprocess.run([sys.executable, "-m", "entrypoint", "render"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: ADMIT_MAX_RUNNING='lots'")


def test_vllm_can_import_the_guard_wherever_it_runs():
    root = str(ROOT.resolve())
    assert bundle_importable({})["PYTHONPATH"] == root
    assert bundle_importable({"PYTHONPATH": "/a"})["PYTHONPATH"] == f"/a:{root}"
    assert bundle_importable({"PYTHONPATH": f"{root}:/a"})["PYTHONPATH"] == f"{root}:/a"


def test_the_supervisors_clients_use_its_token():
    settings = load_settings({**CPU, "API_KEY": KEY})
    assert as_supervisor(settings, "tok-1234").api_key_value == "tok-1234"
    assert as_supervisor(settings, None).api_key_value == KEY
