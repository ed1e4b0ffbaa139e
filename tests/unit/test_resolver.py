"""The resolver: a pure function of environment, env file, host facts and templates; every
value comes back with the layer it came from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.render import render_command
from entrypoint.resolver import BUILT_IN, Machine, resolve
from tests.unit.conftest import sample_host

ROOT = Path(__file__).parents[2]
AVX2 = Machine(platform="cpu", cpu=sample_host())
NPU = Machine(platform="npu", cpu=sample_host())


def test_auto_is_the_hosts_platform_and_says_so():
    resolved = resolve({}, {}, NPU)
    assert resolved.settings.platform == "npu"
    assert resolved.source("PLATFORM") == "detected (PLATFORM=auto)"
    assert resolve({"PLATFORM": "auto"}, {}, AVX2).settings.platform == "cpu"
    assert resolve({"PLATFORM": " CUDA"}, {}, NPU).settings.platform == "cuda"


def test_every_layer_is_named():
    resolved = resolve({"PLATFORM": "npu", "PLATFORM_VARIANT": "high-concurrency", "SEED": "7"},
                       {"PORT": "8100", "SEED": "1"}, AVX2)
    assert resolved.source("SEED") == "user"
    assert resolved.source("PORT") == "env file"
    assert resolved.source("MAX_NUM_SEQS") == "variant high-concurrency"
    assert resolved.source("HCCL_BUFFSIZE") == "platform npu"
    assert resolved.source("SMOKE_EXPECT") == "model profile gemma-3-270m-it"
    assert resolved.source("MAX_MODEL_LEN") == BUILT_IN
    assert resolved.settings.seed == 7 and resolved.settings.port == 8100


def test_cpu_tuning_is_a_layer_and_its_reasons_come_from_the_same_result():
    resolved = resolve({"PLATFORM": "cpu", "DTYPE": "bfloat16"}, {}, AVX2)
    assert resolved.source("VLLM_CPU_KVCACHE_SPACE") == "cpu tuning"
    assert resolved.source("DTYPE") == "user"
    lines = resolved.tuning_lines()
    assert any(line.startswith("cpu tuning: DTYPE=bfloat16 kept from your settings") for line in lines)
    assert resolve({"PLATFORM": "npu"}, {}, AVX2).tuning_lines() == []


def test_derived_defaults_live_in_the_resolver():
    resolved = resolve({"PLATFORM": "cpu", "MODEL_ID": "Qwen/Qwen3-0.6B", "MODEL_CACHE_DIR": "/data"}, {}, AVX2)
    settings = resolved.settings
    assert settings.served_model_name == "Qwen3-0.6B"
    assert resolved.source("SERVED_MODEL_NAME") == "derived from MODEL_ID"
    assert settings.compile_cache_dir == Path("/data/vllm")
    assert settings.model_profile == "generic"
    env = render_command(settings, "/m").env
    assert env["VLLM_CACHE_ROOT"] == "/data/vllm" and env["TORCHINDUCTOR_CACHE_DIR"] == "/data/vllm/torchinductor"
    mine = resolve({"PLATFORM": "cpu", "COMPILE_CACHE_DIR": "/fast", "SERVED_MODEL_NAME": "m"}, {}, AVX2)
    assert (mine.settings.compile_cache_dir, mine.settings.served_model_name) == (Path("/fast"), "m")
    assert mine.source("COMPILE_CACHE_DIR") == "user"


@pytest.mark.parametrize("platform", ["cpu", "npu", "cuda"])
def test_behind_the_router_prefix_caching_defaults_to_on_with_its_reason(platform):
    resolved = resolve({"PLATFORM": platform, "BEHIND_ROUTER": "true"}, {}, AVX2)
    assert resolved.settings.enable_prefix_caching
    assert resolved.source("ENABLE_PREFIX_CACHING").startswith("derived from BEHIND_ROUTER: ")
    assert ("UNMEASURED" in resolved.source("ENABLE_PREFIX_CACHING")) == (platform != "cpu")
    assert "--enable-prefix-caching" in render_command(resolved.settings, "/m").argv
    # A single server keeps the guide's command; an operator's own value wins behind the router too.
    alone = resolve({"PLATFORM": platform}, {}, AVX2)
    assert not alone.settings.enable_prefix_caching and alone.source("ENABLE_PREFIX_CACHING") == BUILT_IN
    mine = resolve({"PLATFORM": platform, "BEHIND_ROUTER": "true"}, {"ENABLE_PREFIX_CACHING": "false"}, AVX2)
    assert not mine.settings.enable_prefix_caching and mine.source("ENABLE_PREFIX_CACHING") == "env file"


def test_the_profile_named_after_the_model_serves_it():
    resolved = resolve({"PLATFORM": "cpu"}, {}, AVX2)
    assert resolved.settings.model_profile == "gemma-3-270m-it"
    assert resolved.source("MODEL_PROFILE") == "the profile serving MODEL_ID"
    assert resolve({"PLATFORM": "cpu", "MODEL_PROFILE": "gemma-3-270m-fixture"}, {}, AVX2).settings.smoke_expect == ""


def test_a_plain_new_field_needs_no_resolver_change():
    resolved = resolve({"PLATFORM": "cpu"}, {}, AVX2)
    assert set(resolved.settings.public_dict()) == {line.split("=")[0].split()[0] for line in resolved.explain()}


def test_settings_explain_prints_each_value_with_its_origin(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PLATFORM": "npu", "MAX_NUM_SEQS": "64", "API_KEY": "s3cret-key"}
    done = subprocess.run([sys.executable, "-m", "entrypoint", "settings", "--explain"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("MAX_NUM_SEQS=64 ") and line.endswith("# user") for line in lines)
    assert any(line.startswith("HCCL_BUFFSIZE=512 ") and line.endswith("# platform npu") for line in lines)
    assert "s3cret-key" not in done.stdout and any(line.startswith("API_KEY=*** ") for line in lines)


@pytest.mark.parametrize("value", ["npu", "cuda", "cpu"])
def test_a_user_platform_is_not_detected(value):
    assert resolve({"PLATFORM": value}, {}, NPU).source("PLATFORM") == "user"
