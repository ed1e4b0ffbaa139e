"""The cards Compose hands to an NPU server (scripts/npu-devices.py): from NPU_DEVICES, NPU_DEVICE
or the settings' card count, written as an override; a bad list is one line and exit 2.
`docker compose config` of the result: tests/container/test_compose_config.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from entrypoint import resolver
from entrypoint.errors import SettingsError
from tests.unit.test_image_build import ROOT, load

npu_devices = load("npu-devices.py")


def settings_json(environ: dict[str, str]) -> dict | None:
    """What `entrypoint settings` prints in the image for `environ` (None when it exits 2)."""
    try:
        return resolver.load({**environ, "PLATFORM": "npu"}, env_file=None).settings.public_dict()
    except SettingsError:
        return None


@pytest.mark.parametrize(("environ", "cards"), [
    ({"NPU_DEVICES": "0,1"}, [0, 1]),
    ({"NPU_DEVICES": "4, 5,6,7", "NPU_DEVICE": "0"}, [4, 5, 6, 7]),
    ({"NPU_DEVICE": "3"}, [3]),
    ({}, [0]),
    ({"TENSOR_PARALLEL_SIZE": "2"}, [0, 1]),
    ({"TENSOR_PARALLEL_SIZE": "2", "DATA_PARALLEL_SIZE": "2"}, [0, 1, 2, 3]),
    ({"MODEL_ID": "google/gemma-3-27b-it"}, [0, 1]),  # the profile's TENSOR_PARALLEL_SIZE
    ({"TENSOR_PARALLEL_SIZE": "two"}, [0]),  # the container says why, in one line
])
def test_the_cards_one_server_gets(environ, cards):
    assert npu_devices.choose_cards(environ, {}, settings=settings_json(environ), counted=True) == cards


def test_the_lists_come_from_the_env_file_too_and_the_environment_wins():
    assert npu_devices.choose_cards({}, {"NPU_DEVICES": "2,3"}) == [2, 3]
    assert npu_devices.choose_cards({"NPU_DEVICES": "1"}, {"NPU_DEVICES": "2,3"}) == [1]


def test_without_a_count_the_last_one_is_kept(tmp_path):
    out = tmp_path / "npu.yaml"
    assert npu_devices.choose_cards({}, {}, out) == [0]
    out.write_text(npu_devices.override([0, 1, 2]))
    assert npu_devices.choose_cards({}, {}, out) == [0, 1, 2]


@pytest.mark.parametrize(("name", "value"), [("NPU_DEVICES", "0,,1"), ("NPU_DEVICES", "a"),
                                             ("NPU_DEVICES", "0,1,0"), ("NPU_DEVICE", "-1"),
                                             ("NPU_DEVICES", "/dev/davinci0")])
def test_a_bad_list_names_the_variable_and_what_is_allowed(name, value):
    with pytest.raises(npu_devices.BadCards) as caught:
        npu_devices.choose_cards({name: value}, {})
    assert str(caught.value).startswith(f"{name}={value!r}: ") and "allowed: " in str(caught.value)


def test_the_override_names_every_card_in_both_variables():
    text = npu_devices.override([2, 3])
    assert "/dev/davinci2" in text and "/dev/davinci3" in text
    assert 'ASCEND_VISIBLE_DEVICES: "2,3"' in text and 'ASCEND_RT_VISIBLE_DEVICES: "2,3"' in text


def test_the_script_prints_the_first_card_or_exits_2_with_one_line(tmp_path):
    out = tmp_path / "npu.yaml"
    script = [sys.executable, str(ROOT / "scripts" / "npu-devices.py"), str(out)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(script, env={**env, "NPU_DEVICES": "1,2"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "1\n" and "/dev/davinci2" in out.read_text()
    done = subprocess.run(script, env={**env, "NPU_DEVICES": "x"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "NPU_DEVICES='x'" in done.stderr
    counted = json.dumps(settings_json({"TENSOR_PARALLEL_SIZE": "2"}))
    done = subprocess.run([*script, "--settings-json", "-"], env=env, input=counted, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "0\n" and "/dev/davinci1" in out.read_text()
