"""The flag table, without vLLM: the server's flags, the engine kwargs read both ways, and
EXTRA_ARGS refused where it would set what the bundle manages (one line, exit 2)."""

from __future__ import annotations

import pytest

from entrypoint.engine_flags import FLAGS, engine_kwargs, kwargs_from_flags, managed_flag_errors, serve_flags
from entrypoint.errors import SettingsError
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from entrypoint.settings import Settings
from tests.support.setting_values import platform_variants
from verification import perf
from verification.inprocess import llm_kwargs

CPU = {"PLATFORM": "cpu"}


def refused(extra: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings({**CPU, "EXTRA_ARGS": extra})
    return caught.value.lines


def test_every_row_names_a_setting() -> None:
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert [row.setting for row in FLAGS if row.setting not in aliases] == []
    assert all(row.attribute in Settings.model_fields for row in FLAGS)


def test_cpu_leaves_device_memory_to_its_kv_cache_setting() -> None:
    assert "--gpu-memory-utilization" not in serve_flags(load_settings(CPU))
    assert "--gpu-memory-utilization" in serve_flags(load_settings({"PLATFORM": "cuda"}))
    assert "gpu_memory_utilization" not in engine_kwargs(load_settings(CPU), "/m")


@pytest.mark.parametrize(("platform", "variant"), platform_variants())
def test_the_servers_engine_flags_read_back_as_the_engine_kwargs(platform: str, variant: str) -> None:
    settings = load_settings({"PLATFORM": platform, "PLATFORM_VARIANT": variant, "DTYPE": "float32",
                              "ENFORCE_EAGER": "false", "SHUTDOWN_TIMEOUT": "5"})
    flags = perf.engine_args(render_command(settings, "/models/m").argv)
    assert {"model": "/models/m", **kwargs_from_flags(flags)} == engine_kwargs(settings, "/models/m")


def test_llm_kwargs_are_the_tables_with_the_dtype_override() -> None:
    settings = load_settings({**CPU, "DTYPE": "float32"})
    kwargs = llm_kwargs(settings, "/m", dtype="bfloat16", max_num_seqs=1)
    assert kwargs == {**engine_kwargs(settings, "/m"), "dtype": "bfloat16", "max_num_seqs": 1}


def test_json_flags_reach_the_engine_parsed() -> None:
    kwargs = engine_kwargs(load_settings({"PLATFORM": "npu"}), "/m")
    assert kwargs["compilation_config"] == {"cudagraph_mode": "FULL_DECODE_ONLY"}
    assert kwargs["additional_config"] == {"enable_cpu_binding": True}


def test_an_unknown_flag_cannot_be_read_back() -> None:
    with pytest.raises(ValueError, match="--chat-template"):
        kwargs_from_flags(["--chat-template", "x"])


# --- managed flags ------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "named", "setting"), [
    ("--port 9000", "'--port'", "PORT"),
    ("--port=9000", "'--port'", "PORT"),
    ("--host 127.0.0.1", "'--host'", "HOST"),
    ("--served-model-name other", "'--served-model-name'", "SERVED_MODEL_NAME"),
    ("--max_model_len 4096", "'--max-model-len'", "MAX_MODEL_LEN"),
    ("--max-model 4096", "'--max-model' (read by vLLM as --max-model-len)", "MAX_MODEL_LEN"),
    # A short option with its value attached, as argparse reads it (issue 30: `-n2 -r1`).
    ("-n2", "'-n2' (read by vLLM as -n)", "LWS_GROUP_SIZE"),
    ("-r1", "'-r1' (read by vLLM as -r)", "LWS_WORKER_INDEX"),
    ("-tp 2", "'-tp'", "TENSOR_PARALLEL_SIZE"),
    ("-tp=2", "'-tp'", "TENSOR_PARALLEL_SIZE"),
    ("-cc.cudagraph_mode PIECEWISE", "'-cc'", "COMPILATION_CONFIG"),
    ("--compilation-config.mode=3", "'--compilation-config'", "COMPILATION_CONFIG"),
    ("--no-enable-prefix-caching", "'--no-enable-prefix-caching'", "ENABLE_PREFIX_CACHING"),
    ("--no-trust-remote-code", "'--no-trust-remote-code'", "TRUST_REMOTE_CODE"),
    ("--device-memory-utilization 0.5", "'--device-memory-utilization'", "GPU_MEMORY_UTILIZATION"),
    ("--model /elsewhere", "'--model'", "MODEL_ID and MODEL_SOURCE"),
    ("/elsewhere --chat-template t", "(its first word)", "MODEL_ID and MODEL_SOURCE"),
    ("--api-key=sk-123", "'--api-key'", "API_KEY_FILE"),
    ("--uds /tmp/s", "'--uds'", "HOST:PORT"),
    ("- --chat-template t", "(its first word)", "MODEL_ID and MODEL_SOURCE"),
    ("--ssl-certfile /c.pem", "'--ssl-certfile'", "plain HTTP"),
])
def test_extra_args_may_not_set_a_managed_flag(extra: str, named: str, setting: str) -> None:
    (line,) = refused(extra)
    assert line.startswith(f"EXTRA_ARGS={named}: ") and setting in line
    assert "9000" not in line and "sk-123" not in line and "\n" not in line


def test_one_line_per_managed_flag() -> None:
    lines = refused("--port 1 --chat-template t --host ::1 --port 2")
    assert [line.split(":", 1)[0] for line in lines] == ["EXTRA_ARGS='--port'", "EXTRA_ARGS='--host'"]


@pytest.mark.parametrize("extra", [
    "--chat-template '/a b.jinja'", "--long-prefill-token-threshold 2", "--model-impl vllm", "--seed-offset 1",
    "--enable-log-requests", "-O3", "--root-path /api", "--kv-cache-dtype auto",
    "--generation-config vllm --max-logprobs 5", "--logprobs-mode x -1"])
def test_other_flags_pass(extra: str) -> None:
    assert managed_flag_errors(load_settings({**CPU, "EXTRA_ARGS": extra}).extra_argv) == []


def test_the_cli_exits_2_with_one_line(tmp_path) -> None:
    from tests.unit.test_secrets import cli

    done = cli(tmp_path, "render", **CPU, EXTRA_ARGS="--max-model-len 4096")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: EXTRA_ARGS='--max-model-len': managed by MAX_MODEL_LEN; set that "
                                   "instead")
