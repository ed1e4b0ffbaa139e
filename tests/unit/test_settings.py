"""Settings: defaults are the guide's, every bad input exits 2 with one line naming it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.errors import SettingsError
from entrypoint.preflight import preflight_errors
from entrypoint.resolver import load_settings
from entrypoint.settings import UNSHOWN_FIELDS, Settings, setting_names

ROOT = Path(__file__).parents[2]

# (variable, bad value, a fragment the error line must contain)
BAD_INPUTS = [
    ("PLATFORM", "tpu", "auto, npu, cuda or cpu"),
    ("PORT", "abc", "integer from 1 to 65535"),
    ("PORT", "0", "integer from 1 to 65535"),
    ("PORT", "70000", "integer from 1 to 65535"),
    ("HOST", "not a host", "IP address"),
    ("GPU_MEMORY_UTILIZATION", "0", "> 0 and <= 1"),
    ("GPU_MEMORY_UTILIZATION", "1.5", "> 0 and <= 1"),
    ("GPU_MEMORY_UTILIZATION", "ninety", "> 0 and <= 1"),
    ("MAX_NUM_SEQS", "0", ">= 1"),
    ("MAX_NUM_SEQS", "-3", ">= 1"),
    ("MAX_MODEL_LEN", "32k", ">= 1"),
    ("MAX_NUM_BATCHED_TOKENS", "1.5", ">= MAX_NUM_SEQS"),
    ("MAX_NUM_BATCHED_TOKENS", "16", "must be >= MAX_NUM_SEQS"),
    ("TENSOR_PARALLEL_SIZE", "0", ">= 1"),
    ("DATA_PARALLEL_SIZE", "two", ">= 1"),
    ("SEED", "-1", ">= 0"),
    ("TRUST_REMOTE_CODE", "maybe", "true or false"),
    ("ENABLE_PREFIX_CACHING", "2", "true or false"),
    ("BEHIND_ROUTER", "yes please", "true or false"),
    ("COMPILATION_CONFIG", "{cudagraph_mode: FULL}", "JSON object"),
    ("COMPILATION_CONFIG", "[1, 2]", "JSON object"),
    ("ADDITIONAL_CONFIG", "{'enable_cpu_binding': True}", "JSON object"),
    ("MODEL_ID", "gemma-3-270m-it", "owner/name"),
    ("MODEL_SOURCE", "weights/here", "absolute path"),
    ("MODEL_SOURCE", "/nonexistent/model", "no config.json"),
    ("MODEL_PROFILE", "no-such-model", "no such profile"),
    ("EXTRA_ARGS", "--chat-template 'unclosed", "balanced quotes"),
    ("DTYPE", "fp8", "auto, bfloat16, float16 or float32"),
    ("OMP_PROC_BIND", "sometimes", "close, spread"),
    ("OMP_NUM_THREADS", "0", ">= 1"),
    ("TASK_QUEUE_ENABLE", "3", "0, 1 or 2"),
    ("HCCL_BUFFSIZE", "big", ">= 1"),
    ("VLLM_CPU_KVCACHE_SPACE", "0", ">= 1"),
    ("STARTUP_TIMEOUT", "-5", "seconds > 0"),
    ("STOP_GRACE_PERIOD", "soon", "seconds > 0"),
    ("SMOKE_EXPECT", "(paris", "regular expression"),
    ("SMOKE_MAX_TOKENS", "0", ">= 1"),
    ("MODELSCOPE_ENDPOINT", "modelscope.cn", "http(s) URL"),
    ("FALLBACK_MODEL_DIR", "/nonexistent", "no config.json"),
    ("DOWNLOAD_RETRIES", "0", ">= 1"),
    ("SHUTDOWN_TIMEOUT", "-1", ">= 0"),
    ("SHUTDOWN_TIMEOUT", "30", "below STOP_GRACE_PERIOD"),
    ("ADMISSION_CONTROL", "maybe", "true or false"),
    ("ADMIT_MAX_RUNNING", "0", "an integer >= 1"),
    ("ADMIT_MAX_QUEUED", "-1", "an integer >= 0"),
    ("ADMIT_QUEUE_TIMEOUT", "0", "a number of seconds > 0"),
    ("ADMIT_MAX_PER_KEY", "0", "an integer >= 1, with an API key set"),
    ("METRICS_NEED_KEY", "2", "true or false"),
    ("API_KEY", "sk secret", "printable ASCII without spaces"),
    ("API_KEY_FILE", "/nonexistent/key", "a readable regular file"),
    ("ASCEND_LOG_PATH", "/logs\nhere", "a writable directory"),
    ("CANARY_ACTION", "panic", "restart or report"),
    ("CANARY_FAILURES", "0", "an integer from 1 to 100"),
    ("CANARY_INTERVAL", "1e3", "a number of seconds >= 0 and <= 86400"),
    ("CANARY_TIMEOUT", "0", "a number of seconds > 0 and <= 3600"),
    ("COMPILE_CACHE_DIR", "/cache\nhere", "a writable directory"),
    ("CPU_TUNING", "max", "auto or off"),
    ("DISTRIBUTED_EXECUTOR_BACKEND", "mpi", "mp, ray or uni"),
    ("ENABLE_CHUNKED_PREFILL", "maybe", "true or false"),
    ("ENFORCE_EAGER", "eager", "true or false"),
    ("HCCL_OP_EXPANSION_MODE", "GPU", "AIV, AI_CPU or HOST"),
    ("IMAGE_VERSION", "latest", "not a supported image"),
    ("LWS_GROUP_SIZE", "1", "an integer >= 2"),
    ("LWS_LEADER_ADDRESS", "leader", "all of LWS_GROUP_SIZE, LWS_WORKER_INDEX, LWS_LEADER_ADDRESS"),
    ("LWS_WORKER_INDEX", "-1", "an integer >= 0"),
    ("METRICS_PORT", "65536", "an integer from 0 to 65535"),
    ("MODELSCOPE_TOKEN", "ms token", "printable ASCII without spaces"),
    ("MODELSCOPE_TOKEN_FILE", "/nonexistent/token", "a readable regular file"),
    ("MODEL_CACHE_DIR", "/models\nhere", "a writable directory"),
    ("MODEL_REVISION", "../master", "a branch, tag or commit name"),
    ("MULTI_NODE_PORT", "0", "an integer from 1 to 65535"),
    ("PIPELINE_PARALLEL_SIZE", "0", "an integer >= 1"),
    ("PLATFORM_VARIANT", "turbo", "no such variant for npu"),
    ("PYTORCH_NPU_ALLOC_CONF", "a\nb", "an allocator config"),
    ("REQUEST_TIMEOUT", "inf", "a number of seconds > 0 and <= 3600"),
    ("SERVED_MODEL_NAME", "-served", "a non-empty name"),
    ("SHIPPED_COMPILE_CACHE", "/shipped\nhere", "a directory"),
    ("SMOKE_ON_START", "sometimes", "true or false"),
    ("STATE_DIR", "/state\nhere", "a writable directory"),
    ("TERMINATION_LOG", "termination-log", "an absolute file path"),
    ("TORCHINDUCTOR_CPP_MARCH", "-march=native", "a gcc -march value"),
    ("VLLM_CPU_NUM_OF_RESERVED_CPU", "-1", "an integer >= 0"),
    ("VLLM_CPU_OMP_THREADS_BIND", "all", "auto, nobind or core lists"),
    ("VLLM_USE_AOT_COMPILE", "aot", "true or false"),
    ("VLLM_USE_MODELSCOPE", "hub", "true or false"),
]
# Settings that take any text; every other setting refuses something, so it has a row above.
FREE_TEXT = {"SMOKE_PROMPT"}
SECRETS = {"API_KEY", "MODELSCOPE_TOKEN"}  # named with '***', never quoted


def errors_for(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return caught.value.lines


@pytest.mark.parametrize(("name", "value", "allowed"), BAD_INPUTS, ids=[f"{n}={v}" for n, v, _ in BAD_INPUTS])
def test_bad_input_names_variable_value_and_allowed(name, value, allowed):
    lines = errors_for({"PLATFORM": "npu", name: value})
    line = next(line for line in lines if line.startswith(f"{name}="))
    # A value that may hold a secret is named, not quoted (UNSHOWN_FIELDS); a line break is quoted escaped.
    if name in SECRETS:
        assert value not in line and f"{name}='***'" in line
    else:
        assert value in line or repr(value) in line or name in UNSHOWN_FIELDS
    assert allowed in line and "\n" not in line


def test_every_setting_has_a_bad_input_unless_it_takes_any_text():
    assert {name for name, _, _ in BAD_INPUTS} == set(setting_names()) - FREE_TEXT
    for value in ("", " ", "-1", "a\nb", "\u00e9t\u00e9", "{", "x" * 1000):
        load_settings({"PLATFORM": "npu", **dict.fromkeys(FREE_TEXT, value)})  # no SettingsError


def test_all_errors_reported_at_once():
    lines = errors_for({"PORT": "x", "MAX_NUM_SEQS": "y", "PLATFORM": "z", "COMPILATION_CONFIG": "{"})
    assert {line.split("=")[0] for line in lines} == {"PORT", "MAX_NUM_SEQS", "PLATFORM", "COMPILATION_CONFIG"}


def test_chunked_prefill_off_needs_budget_for_a_whole_prompt():
    lines = errors_for({"ENABLE_CHUNKED_PREFILL": "false", "MAX_MODEL_LEN": "8192", "MAX_NUM_BATCHED_TOKENS": "4096"})
    assert any("MAX_MODEL_LEN (8192)" in line for line in lines)


def test_defaults_are_the_guides():
    s = load_settings({"PLATFORM": "npu"})
    assert (s.host, s.port, s.seed, s.served_model_name) == ("0.0.0.0", 8000, 1024, "gemma-3-270m-it")
    assert (s.max_num_seqs, s.max_model_len, s.max_num_batched_tokens) == (32, 32768, 4096)
    assert s.gpu_memory_utilization == 0.9 and s.trust_remote_code and not s.enable_prefix_caching
    assert s.omp_num_threads == 1 and s.hccl_buffsize == 512 and s.task_queue_enable == 1


def test_empty_values_keep_the_default():
    assert load_settings({"PORT": "", "MAX_NUM_SEQS": "  "}).port == 8000


def test_env_file_is_under_the_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9001\nMAX_NUM_SEQS=8\n")
    s = load_settings({"MAX_NUM_SEQS": "4"}, env_file=env_file)
    assert (s.port, s.max_num_seqs) == (9001, 4)


def test_platform_and_profile_layers():
    cpu = load_settings({"PLATFORM": "cpu", "CPU_TUNING": "off"})
    assert cpu.compilation_config is None and cpu.vllm_cpu_kvcache_space == 2 and cpu.omp_num_threads is None
    generic = load_settings({"PLATFORM": "cpu", "MODEL_ID": "Qwen/Qwen3-0.6B"})
    assert generic.served_model_name == "Qwen3-0.6B" and generic.model_profile == "generic"


def test_default_profile_is_the_guides_model_not_the_test_bed_variant():
    s = load_settings({})
    assert s.model_profile == "gemma-3-270m-it" and s.smoke_expect == "(?i)paris"
    assert load_settings({"MODEL_PROFILE": "gemma-3-270m-fixture"}).smoke_expect == ""


def test_auto_platform_is_resolved():
    assert load_settings({"PLATFORM": "auto"}).platform in ("npu", "cuda", "cpu")


def test_port_in_use_is_reported(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = load_settings({"HOST": "127.0.0.1", "PORT": str(port), "MODEL_CACHE_DIR": str(tmp_path),
                           "STATE_DIR": str(tmp_path / "state")})
        assert any(line.startswith(f"PORT={port}: already in use") for line in preflight_errors(s))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_dir_is_reported_for_users(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    s = load_settings({"MODEL_CACHE_DIR": str(locked / "cache"), "STATE_DIR": str(tmp_path / "s")})
    assert any(line.startswith("MODEL_CACHE_DIR=") for line in preflight_errors(s, check_port=False))


def test_unwritable_dir_is_reported(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    s = load_settings({"MODEL_CACHE_DIR": str(a_file / "cache"), "ASCEND_LOG_PATH": str(a_file / "log"),
                       "STATE_DIR": str(tmp_path / "s")})
    names = {line.split("=")[0] for line in preflight_errors(s, check_port=False)}
    assert names == {"MODEL_CACHE_DIR", "ASCEND_LOG_PATH"}


def test_cli_exits_2_with_one_line_each_and_no_traceback(tmp_path):
    env = {"PATH": os.environ["PATH"], "PORT": "http", "GPU_MEMORY_UTILIZATION": "2", "HOME": str(tmp_path)}
    for command in (["serve"], ["render"], ["download"], ["smoke"]):
        done = subprocess.run([sys.executable, "-m", "entrypoint", *command], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
        assert "Traceback" not in done.stderr


def test_every_setting_documents_what_is_allowed():
    for field in Settings.model_fields.values():
        assert field.alias and field.description and field.json_schema_extra["allowed"], field
