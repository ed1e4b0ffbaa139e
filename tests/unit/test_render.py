"""Rendering: the NPU command is the guide's, flag for flag; CPU and CUDA have goldens too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.render import read_shell, render_command
from entrypoint.resolver import load_settings

GOLDEN = Path(__file__).parent / "golden"
GUIDE = Path(__file__).parents[3] / "shared" / "seed" / "gemma-3-270m-on-vllm-ascend.md"
GUIDE_MODEL_PATH = "/opt/atomgit/weights/gemma-3-270m-it"
CACHE_KEYS = {"HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_CACHE", "VLLM_CACHE_ROOT",
              "TORCHINDUCTOR_CACHE_DIR"}


def test_golden_is_the_guide_text():
    # CI runs in a fresh clone with a copy of shared/ beside it: a missing guide is a failure.
    assert GUIDE.is_file(), f"no deployment guide at {GUIDE}: put a copy of shared/ beside the checkout"
    assert (GOLDEN / "npu.sh").read_text().strip() in GUIDE.read_text()


def test_npu_render_equals_the_guide_flag_for_flag():
    guide_env, guide_argv = read_shell((GOLDEN / "npu.sh").read_text())
    command = render_command(load_settings({"PLATFORM": "npu"}), GUIDE_MODEL_PATH)
    assert command.argv == guide_argv
    assert list(command.env)[: len(guide_env)] == list(guide_env)
    assert {k: v for k, v in command.env.items() if k not in CACHE_KEYS} == guide_env


def test_npu_shell_output_round_trips():
    command = render_command(load_settings({"PLATFORM": "npu"}), GUIDE_MODEL_PATH)
    env, argv = read_shell(command.to_shell())
    assert argv == command.argv and env == command.env


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_platform_golden(platform, tmp_path):
    environ = {"PLATFORM": platform, "MODEL_CACHE_DIR": "/models"}
    command = render_command(load_settings(environ), "/models/m", python="/venv/bin/python")
    expected = json.loads((GOLDEN / f"{platform}.json").read_text())
    assert {"argv": command.argv, "env": command.env} == expected


def test_cpu_has_no_npu_only_flags():
    argv = render_command(load_settings({"PLATFORM": "cpu"}), "/m").argv
    assert "--additional-config" not in argv and "--compilation-config" not in argv
    assert argv[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]


def test_extra_args_come_last_and_split_like_a_shell():
    extra = "--long-prefill-token-threshold 8 --chat-template '/a b.jinja'"
    argv = render_command(load_settings({"PLATFORM": "npu", "EXTRA_ARGS": extra}), "/m").argv
    assert argv[-4:] == ["--long-prefill-token-threshold", "8", "--chat-template", "/a b.jinja"]


def test_optional_flags_render_only_when_set():
    base = render_command(load_settings({"PLATFORM": "cpu", "CPU_TUNING": "off"}), "/m").argv
    assert "--dtype" not in base and "--enforce-eager" not in base
    argv = render_command(load_settings({"PLATFORM": "cpu", "DTYPE": "float32", "ENFORCE_EAGER": "true",
                                         "ENABLE_PREFIX_CACHING": "true"}), "/m").argv
    assert argv[argv.index("--dtype"):argv.index("--dtype") + 2] == ["--dtype", "float32"]
    assert "--enforce-eager" in argv and "--enable-prefix-caching" in argv


def test_caches_live_on_the_model_cache_volume():
    env = render_command(load_settings({"PLATFORM": "cuda", "MODEL_CACHE_DIR": "/data"}), "/m").env
    assert env["HF_HOME"].startswith("/data/") and env["MODELSCOPE_CACHE"].startswith("/data/")
    assert env["VLLM_CACHE_ROOT"] == "/data/vllm" and env["HF_HUB_OFFLINE"] == "1"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/data/vllm/torchinductor"


def test_json_format_is_argv_and_env():
    command = render_command(load_settings({"PLATFORM": "npu"}), "/m")
    assert json.loads(command.to_json()) == {"argv": command.argv, "env": command.env}


def test_image_version_golden():
    """The current stable image: the guide's command plus that image's layer (templates/images.yaml)."""
    environ = {"PLATFORM": "npu", "IMAGE_VERSION": "v0.23.0", "MODEL_CACHE_DIR": "/models"}
    command = render_command(load_settings(environ), "/models/m")
    assert {"argv": command.argv, "env": command.env} == json.loads((GOLDEN / "npu-v0.23.0.json").read_text())


def test_the_guides_image_is_the_default_and_adds_nothing():
    default = render_command(load_settings({"PLATFORM": "npu"}), GUIDE_MODEL_PATH)
    pinned = render_command(load_settings({"PLATFORM": "npu", "IMAGE_VERSION": "v0.18.0rc1"}), GUIDE_MODEL_PATH)
    assert default == pinned


def test_unknown_image_version_is_one_line():
    from entrypoint.errors import SettingsError

    with pytest.raises(SettingsError) as caught:
        load_settings({"PLATFORM": "npu", "IMAGE_VERSION": "v0.1"})
    assert caught.value.message.count("\n") == 0 and "IMAGE_VERSION='v0.1'" in caught.value.message
