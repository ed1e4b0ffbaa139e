"""Hostile input to the settings, by kind: names that become paths or flags, numbers, URLs,
env files and secret files, typos. Each bad value is one line naming the variable (exit 2
from the CLI, no traceback); nothing is created outside the cache; nothing blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.env_file import ENV_FILE_MAX_BYTES, read_env_file
from entrypoint.errors import SettingsError
from entrypoint.resolver import Machine, load_settings, resolve
from entrypoint.scrub import scrub_url as mask_url
from entrypoint.weights import cache_folder
from tests.unit.conftest import sample_host

ROOT = Path(__file__).parents[2]
CPU = {"PLATFORM": "cpu"}
HOST = Machine(platform="cpu", cpu=sample_host())


def error_lines(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings({**CPU, **environ})
    return caught.value.lines


def only_error(name: str, value: str) -> str:
    (line,) = error_lines({name: value})
    assert line.startswith(f"{name}="), line
    return line


# --- names that become paths or flags ----------------------------------------------------------

@pytest.mark.parametrize("value", [
    "google/..", "google/.", "../x", "evil/--trust-remote-code", "-evil/x", "google/gemma\n", "google/gemma\r",
    "google/gem\x00ma", "a/b/c", "owner", "owner/", "/name", "a/ b", "o/" + "n" * 97, "o" * 97 + "/n", "ow ner/n",
])
def test_model_id_grammar(value):
    only_error("MODEL_ID", value)


@pytest.mark.parametrize("value", ["google/gemma-3-270m-it", "Qwen/Qwen3-0.6B", "a_b/c.d-e", "o/" + "n" * 96])
def test_model_ids_people_use(value):
    assert load_settings({**CPU, "MODEL_ID": value}).model_id == value


@pytest.mark.parametrize("value", [
    "../../../../x", "/etc", "a/../b", "..", ".", ".hidden", "-rf", "v1\n", "a//b", "a/", "r" * 129, "a b", "a\x00",
    "a..b",
])
def test_revision_grammar(value):
    only_error("MODEL_REVISION", value)


@pytest.mark.parametrize("value", ["master", "v1.0", "release/v2", "0123456789abcdef0123456789abcdef01234567"])
def test_revisions_people_use(value):
    settings = load_settings({**CPU, "MODEL_REVISION": value})
    assert settings.hub_cache_folder.is_relative_to(settings.model_cache_dir)


@pytest.mark.parametrize("value", [
    "--port", "-x", "a\nb", "a\rb", "m\n", "a\x00b", "..", ".", "x/../y", "a b", "x" * 129, "a/b/c", "tab\t",
])
def test_served_name_grammar(value):
    only_error("SERVED_MODEL_NAME", value)


def test_the_derived_served_name_follows_the_same_grammar():
    assert load_settings({**CPU, "MODEL_ID": "o/" + "n" * 96}).served_model_name == "n" * 96
    assert load_settings({**CPU, "SERVED_MODEL_NAME": "team/model:v1"}).served_model_name == "team/model:v1"


def test_a_weights_folder_leading_out_of_the_cache_is_refused_before_anything_is_created(tmp_path):
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    (cache / "models").mkdir(parents=True)
    outside.mkdir()
    (cache / "models" / "google").symlink_to(outside)
    with pytest.raises(SettingsError, match=r"^MODEL_REVISION='master': its cache folder .* outside MODEL_CACHE_DIR"):
        load_settings({**CPU, "MODEL_CACHE_DIR": str(cache)})
    assert list(outside.iterdir()) == []


def test_cache_folder_checks_again_at_download_time(tmp_path):
    cache = tmp_path / "cache"
    settings = load_settings({**CPU, "MODEL_CACHE_DIR": str(cache)})
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "google").symlink_to(tmp_path)  # made after the settings were read
    with pytest.raises(SettingsError, match="outside MODEL_CACHE_DIR"):
        cache_folder(settings)


def test_a_cache_path_too_long_for_the_os_is_a_settings_error():
    line = only_error("MODEL_CACHE_DIR", "/" + "/".join(["d" * 200] * 20))
    assert "longer than" in line


# --- numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("TENSOR_PARALLEL_SIZE", "2_0"), ("PORT", "8_000"), ("PORT", "1e3"), ("SEED", "0x10"), ("MAX_NUM_SEQS", "３２"),
    ("REQUEST_TIMEOUT", "inf"), ("REQUEST_TIMEOUT", "nan"), ("REQUEST_TIMEOUT", "1e10"), ("STARTUP_TIMEOUT", "inf"),
    ("STARTUP_TIMEOUT", "Infinity"), ("STOP_GRACE_PERIOD", "-inf"), ("CANARY_TIMEOUT", "1_0"),
    ("REQUEST_TIMEOUT", "10000000"), ("CANARY_INTERVAL", "1e3"), ("GPU_MEMORY_UTILIZATION", "9e-1"),
    ("MAX_MODEL_LEN", "9" * 30), ("TASK_QUEUE_ENABLE", "1_0"),
])
def test_numbers_are_written_as_people_write_them(name, value):
    only_error(name, value)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("PORT", " 8001 ", 8001), ("TENSOR_PARALLEL_SIZE", "+1", 1), ("REQUEST_TIMEOUT", "2.5", 2.5),
    ("REQUEST_TIMEOUT", "60", 60.0), ("GPU_MEMORY_UTILIZATION", ".5", 0.5), ("CANARY_INTERVAL", "0", 0.0),
    ("TASK_QUEUE_ENABLE", "1", 1),
])
def test_plain_numbers_pass(name, value, expected):
    settings = load_settings({**CPU, name: value})
    assert settings.public_dict()[name] == expected


def test_the_settings_json_is_strict_json():
    settings = load_settings({**CPU, "STARTUP_TIMEOUT": "604800"})
    json.dumps(settings.public_dict(), allow_nan=False)


# --- URLs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "http://h:99999", "http://h:0", "http://h\n", "http://h x", "http://h\t", "ftp://h", "http://", "http:///path",
    "http://[::1", "h:80", "modelscope.cn", "http://h/?q=1", "http://h/#f", "javascript://x%0a",
])
def test_endpoint_urls_are_parsed(value):
    only_error("MODELSCOPE_ENDPOINT", value)


def test_endpoint_credentials_are_masked_in_output_and_errors():
    settings = load_settings({**CPU, "MODELSCOPE_ENDPOINT": "https://user:pa55@hub.example:8443/api/"})
    assert settings.modelscope_endpoint == "https://user:pa55@hub.example:8443/api"
    assert settings.public_dict()["MODELSCOPE_ENDPOINT"] == "https://***@hub.example:8443/api"
    line = only_error("MODELSCOPE_ENDPOINT", "http://user:pa55@h:99999")
    assert "pa55" not in line and "user" not in line


@pytest.mark.parametrize(("url", "shown"), [
    ("http://h", "http://h"), ("http://u:p@h", "http://***@h"), ("u:p@h", "***@h"), ("http://u@h/a@b", "http://***@b"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


# --- env files --------------------------------------------------------------------------------

def env_file_error(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        read_env_file(path)
    (line,) = caught.value.lines
    assert line.startswith(f"--env-file {str(path)!r}"), line
    return line


def test_env_file_missing_folder_device(tmp_path):
    assert "No such file" in env_file_error(tmp_path / "nope.env")
    assert "not a regular file" in env_file_error(tmp_path)
    assert "not a regular file" in env_file_error(Path("/dev/zero"))


def test_env_file_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    assert "not a regular file" in env_file_error(fifo)


def test_env_file_not_utf8_or_too_large(tmp_path):
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"SMOKE_PROMPT=caf\xe9\n")
    assert "not UTF-8" in env_file_error(latin)
    huge = tmp_path / "huge.env"
    huge.write_text("#" * (ENV_FILE_MAX_BYTES + 1))
    assert "larger than" in env_file_error(huge)


def test_env_file_malformed_line_names_the_line(tmp_path):
    path = tmp_path / "bad.env"
    path.write_text("PORT=8001\n# fine\n\nthis is not a setting\n")
    assert ", line 4: not KEY=VALUE" in env_file_error(path)


def test_env_file_values(tmp_path):
    path = tmp_path / "ok.env"
    path.write_text("PORT=8001\nexport SEED=7\nEMPTY\nQUOTED='a b'\n")
    assert read_env_file(path) == {"PORT": "8001", "SEED": "7", "QUOTED": "a b"}


def test_secret_file_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    (line,) = error_lines({"API_KEY_FILE": str(fifo)})
    assert line.startswith(f"API_KEY_FILE='{fifo}': not a regular file")


# --- near-miss names --------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "meant"), [
    ("MAX_MODEL_LENGTH", "MAX_MODEL_LEN"), ("PROT", "PORT"), ("TRUST_REMOTE_CODES", "TRUST_REMOTE_CODE"),
    ("MODELID", "MODEL_ID"), ("PLATFORM_VARIENT", "PLATFORM_VARIANT"), ("SMOKE_PROMT", "SMOKE_PROMPT"),
])
def test_a_near_miss_gets_one_warning(typed, meant):
    (line,) = resolve({**CPU, typed: "1"}, {}, HOST).warnings
    assert line.startswith(f"{typed} ") and line.endswith(f"did you mean {meant}?")


def test_the_environment_of_other_software_does_not_warn():
    others = ["PATH", "HOME", "HOSTNAME", "TERM", "USER", "LANG", "PWD", "SHELL", "PYTHONPATH", "HF_HOME",
              "KUBERNETES_SERVICE_PORT", "ASCEND_SERVE_PORT", "ASCEND_SERVE_SERVICE_PORT_HTTP", "VLLM_CACHE_ROOT",
              "VLLM_PORT", "MODELSCOPE_CACHE", "ASCEND_HOME_PATH", "PYTORCH_CUDA_ALLOC_CONF", "HOST_UID",
              "TASK_QUEUE", "VLLM_USE_V1", "TORCHINDUCTOR_CACHE_DIR", "path", "Port"]
    assert resolve({**CPU, **dict.fromkeys(others, "x")}, {}, HOST).warnings == ()


def test_near_misses_in_the_env_file_warn_too():
    assert resolve(CPU, {"PROT": "8001"}, HOST).warnings == (
        "PROT is not a setting of the bundle and is ignored; did you mean PORT?",)


# --- the command line: one line, exit 2, no traceback -----------------------------------------

def run_cli(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PLATFORM": "cpu", "HOME": "/tmp", **environ}
    return subprocess.run([sys.executable, "-m", "entrypoint", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("environ", "args", "named"), [
    ({"MODEL_REVISION": "../../x"}, (), "MODEL_REVISION="),
    ({"MODEL_REVISION": "/etc"}, (), "MODEL_REVISION="),
    ({"MODEL_ID": "evil/--trust-remote-code"}, (), "MODEL_ID="),
    ({"MODEL_ID": "o/" + "n" * 300}, (), "MODEL_ID="),
    ({"REQUEST_TIMEOUT": "inf"}, (), "REQUEST_TIMEOUT="),
    ({"TENSOR_PARALLEL_SIZE": "2_0"}, (), "TENSOR_PARALLEL_SIZE="),
    ({"SERVED_MODEL_NAME": "m\n"}, (), "SERVED_MODEL_NAME="),
    ({"MODELSCOPE_ENDPOINT": "http://u:secretpw@h:99999"}, (), "MODELSCOPE_ENDPOINT="),
    ({}, ("--env-file", "/dev/zero"), "--env-file '/dev/zero'"),
    ({}, ("--env-file", "/nonexistent.env"), "--env-file '/nonexistent.env'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(environ, args, named):
    done = run_cli(*args, "settings", **environ)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {named}") and "secretpw" not in line
    assert done.stdout == ""


def test_cli_download_with_an_escaping_revision_creates_nothing(tmp_path):
    done = run_cli("download", MODEL_REVISION="../../../../x", MODEL_CACHE_DIR=str(tmp_path / "cache"))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "x").exists() and not any(tmp_path.rglob("*.lock"))


def test_cli_fifo_env_file_exits_2(tmp_path):
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    done = run_cli("--env-file", str(fifo), "settings")
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_cli_warns_once_on_a_near_miss_and_still_runs():
    done = run_cli("settings", PROT="9000")
    assert done.returncode == 0
    assert [line for line in done.stderr.splitlines() if "PROT" in line] == [
        "[entrypoint] PROT is not a setting of the bundle and is ignored; did you mean PORT?"]
    assert json.loads(done.stdout)["PORT"] == 8000


def test_credentials_in_a_clients_error_text_are_masked():
    from entrypoint.weights import headline

    error = Exception("Max retries exceeded with url: http://user:pw@hub:99/api/v1/models (also https://t@h/x)")
    assert headline(error) == "Max retries exceeded with url: http://***@hub:99/api/v1/models (also https://***@h/x)"


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\uff12", "2\u00b2"])
def test_digits_that_are_not_ascii_are_refused_before_the_cpu_tuning_reads_them(value):
    from entrypoint.value_grammar import plain_int

    assert plain_int(value) is None
    with pytest.raises(SettingsError):
        load_settings({"PLATFORM": "cpu", "TENSOR_PARALLEL_SIZE": value, "DATA_PARALLEL_SIZE": value})
