"""Secrets: VAR or VAR_FILE, never both; the value reaches only the server's environment
and the HTTP headers, never printed output, error lines or argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from entrypoint.errors import SettingsError, UserError
from entrypoint.http import bearer
from entrypoint.readiness import probe
from entrypoint.render import ServeCommand, render_command
from entrypoint.resolver import load_settings
from entrypoint.settings import SECRET_FIELDS, Settings, error_line
from entrypoint.settings_docs import configmap_env, env_example
from entrypoint.smoke import run_smoke

ROOT = Path(__file__).parents[2]
KEY = "sk-test-7f3a9c"
TOKEN = "ms-test-4b1e0d"
CPU = {"PLATFORM": "cpu"}


def errors_for(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return caught.value.lines


def cli(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    """`python -m entrypoint ARGS` with only these settings in its environment."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **settings}
    return subprocess.run([sys.executable, "-m", "entrypoint", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def secret_file(tmp_path: Path, content: str | bytes, name: str = "secret") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# --- VAR and VAR_FILE ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["API_KEY", "MODELSCOPE_TOKEN"])
def test_value_is_read_from_its_file_without_the_trailing_newline(tmp_path, name):
    path = secret_file(tmp_path, f"{KEY}\n")
    settings = load_settings({**CPU, f"{name}_FILE": str(path)})
    assert getattr(settings, name.lower()).get_secret_value() == KEY
    assert getattr(settings, f"{name.lower()}_file") == path


def test_a_windows_line_end_is_one_newline_too(tmp_path):
    settings = load_settings({**CPU, "API_KEY_FILE": str(secret_file(tmp_path, f"{KEY}\r\n"))})
    assert settings.api_key.get_secret_value() == KEY


@pytest.mark.parametrize("name", ["API_KEY", "MODELSCOPE_TOKEN"])
def test_both_set_is_one_error_naming_both(tmp_path, name):
    lines = errors_for({**CPU, name: KEY, f"{name}_FILE": str(secret_file(tmp_path, KEY))})
    assert len(lines) == 1
    assert name in lines[0] and f"{name}_FILE" in lines[0] and "both" in lines[0]
    assert KEY not in lines[0]


@pytest.mark.parametrize("content, reason", [
    (None, "No such file"),
    ("", "empty"),
    ("\n", "empty"),
    ("# the keys\n\n", "empty"),
    (f"{KEY} {KEY}", "line 1 has spaces"),
    (f"{KEY}\nsk-\x01bad", "line 2 has spaces, control"),
    ("sk-\xfcber\n".encode("latin-1"), "not UTF-8"),
])
def test_a_bad_file_names_variable_and_path_never_the_content(tmp_path, content, reason):
    path = tmp_path / "missing" if content is None else secret_file(tmp_path, content)
    lines = errors_for({**CPU, "API_KEY_FILE": str(path)})
    assert len(lines) == 1
    assert lines[0].startswith(f"API_KEY_FILE='{path}': ") and reason in lines[0] and "allowed:" in lines[0]
    assert KEY not in lines[0]


def test_a_key_file_holds_several_keys_and_clients_send_the_first(tmp_path):
    path = secret_file(tmp_path, f"# rotated 2026-12\n\n  {KEY}  \r\nsk-next-2b9d\n# old: gone\n")
    settings = load_settings({**CPU, "API_KEY_FILE": str(path)})
    assert settings.api_key.get_secret_value() == KEY


def test_a_folder_is_not_a_secret_file(tmp_path):
    (line,) = errors_for({**CPU, "MODELSCOPE_TOKEN_FILE": str(tmp_path)})
    assert line.startswith(f"MODELSCOPE_TOKEN_FILE='{tmp_path}': not a regular file")


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    (line,) = errors_for({**CPU, "API_KEY_FILE": str(secret_file(tmp_path, "k" * 100_000))})
    assert "larger than" in line


@pytest.mark.parametrize("value", [f"{KEY} tail", f"{KEY}\tx", "schlüssel-7f3a9c"])
def test_a_bad_value_is_reported_masked(value):
    (line,) = errors_for({**CPU, "API_KEY": value})
    assert line.startswith("API_KEY='***': ") and "allowed: printable ASCII without spaces" in line
    assert value not in line and KEY not in line


def test_error_line_masks_every_secret_whatever_pydantic_says():
    for name in SECRET_FIELDS:
        line = error_line({"loc": (name,), "msg": "Input should be a valid string", "input": KEY})
        assert KEY not in line and "***" in line


def test_empty_values_mean_unset(tmp_path):
    settings = load_settings({**CPU, "API_KEY": "", "API_KEY_FILE": "", "MODELSCOPE_TOKEN": ""})
    assert settings.api_key is None and settings.modelscope_token is None


# --- where the value goes, and where it never shows -------------------------------------

def test_public_dict_and_repr_mask_secrets():
    settings = load_settings({**CPU, "API_KEY": KEY, "MODELSCOPE_TOKEN": TOKEN})
    public = settings.public_dict()
    assert public["API_KEY"] == "***" and public["MODELSCOPE_TOKEN"] == "***"
    for text in (json.dumps(public), repr(settings), str(settings)):
        assert KEY not in text and TOKEN not in text


def test_the_key_reaches_vllm_through_its_environment_only():
    settings = load_settings({**CPU, "API_KEY": KEY, "MODELSCOPE_TOKEN": TOKEN})
    command = render_command(settings, "/models/m")
    assert command.env["BUNDLE_API_KEY"] == KEY
    assert not any(KEY in word or TOKEN in word for word in command.argv)
    assert TOKEN not in command.env.values()  # weights are local by now: vLLM never needs the hub token
    for text in (command.to_shell(), command.to_json(), repr(command)):
        assert KEY not in text and TOKEN not in text
    assert "export BUNDLE_API_KEY='***'" in command.to_shell()
    assert json.loads(command.to_json())["env"]["BUNDLE_API_KEY"] == "***"


def test_a_key_file_stays_a_file_for_the_guard_to_reread(tmp_path):
    path = secret_file(tmp_path, f"{KEY}\n")
    command = render_command(load_settings({**CPU, "API_KEY_FILE": str(path)}), "/models/m")
    assert json.loads(command.env["BUNDLE_API_GUARD"])["key_file"] == str(path)
    assert not any(KEY in value for value in command.env.values()) and "BUNDLE_API_KEY" not in command.env


def test_no_key_no_guard_and_no_vllm_api_key():
    command = render_command(load_settings(CPU), "/models/m")
    assert "VLLM_API_KEY" not in command.env and "BUNDLE_API_GUARD" not in command.env
    assert "--middleware" not in command.argv


@pytest.mark.parametrize("extra", [f"--api-key {KEY}", f"--api-key={KEY}", f"--api_key {KEY}", f"--api-k {KEY}"])
def test_a_key_in_extra_args_is_refused_with_a_pointer_to_the_file_setting(extra):
    (line,) = errors_for({**CPU, "EXTRA_ARGS": extra})
    assert line.startswith("EXTRA_ARGS=") and "API_KEY_FILE" in line
    assert KEY not in line


@pytest.mark.parametrize("key", ["1", "8000", "0.0.0.0", "cpu", "--port"])
def test_masking_is_by_position_never_by_value(key):
    """A key equal to another word (a TP size, the port) hides only itself."""
    command = render_command(load_settings({**CPU, "API_KEY": key}), "/models/m")
    assert command.shown_argv() == command.argv
    assert command.shown_env() == {**command.env, "BUNDLE_API_KEY": "***"}


@pytest.mark.parametrize(("argv", "shown"), [
    (["vllm", "--api-key", KEY, "--port", "1"], ["vllm", "--api-key", "***", "--port", "1"]),
    (["vllm", f"--api-key={KEY}", KEY], ["vllm", "--api-key=***", KEY]),
    (["vllm", "--api-key", KEY, "k2", "-tp", "1"], ["vllm", "--api-key", "***", "***", "-tp", "1"]),
    (["vllm", "--hf_token", KEY], ["vllm", "--hf_token", "***"]),
])
def test_secret_flags_are_masked_where_they_appear(argv, shown):
    assert ServeCommand(argv=argv).shown_argv() == shown


def test_bearer_header():
    settings = load_settings({**CPU, "API_KEY": KEY})
    assert bearer(settings.api_key) == {"Authorization": f"Bearer {KEY}"}
    assert bearer(None) == {}


@pytest.mark.parametrize("args", [["settings"], ["render"], ["render", "--format", "json"]])
def test_cli_output_never_shows_a_secret(tmp_path, args):
    key_file = secret_file(tmp_path, f"{KEY}\n")
    for settings in ({"API_KEY": KEY, "MODELSCOPE_TOKEN": TOKEN},
                     {"API_KEY_FILE": str(key_file), "MODELSCOPE_TOKEN": TOKEN}):
        done = cli(tmp_path, *args, **CPU, **settings)
        assert done.returncode == 0, done.stderr
        assert KEY not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
        # render shows the key masked, or the file the guard reads it from.
        assert "***" in done.stdout or (args[0] == "render" and "API_KEY_FILE" in settings)


@pytest.mark.parametrize("command", ["serve", "render", "download", "smoke", "settings"])
def test_cli_both_set_exits_2_with_one_line(tmp_path, command):
    done = cli(tmp_path, command, **CPU, API_KEY=KEY, API_KEY_FILE=str(secret_file(tmp_path, KEY)))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: API_KEY_FILE=") and "API_KEY is set too" in done.stderr
    assert KEY not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_cli_missing_file_exits_2_naming_variable_and_path(tmp_path):
    done = cli(tmp_path, "settings", **CPU, MODELSCOPE_TOKEN_FILE="/run/secrets/nope")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: MODELSCOPE_TOKEN_FILE='/run/secrets/nope': cannot read it (No such file "
                                   "or directory); allowed: a readable regular file holding the value (one trailing "
                                   "newline is ignored)")


# --- a server that wants a key (vLLM's rule: /v1 guarded, /health open) ----------------

class _Guarded(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        authorized = self.headers.get("Authorization") == f"Bearer {KEY}"
        status, body = (200, {"data": [{"id": "m"}]}) if authorized or self.path == "/health" else (401, {})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def guarded() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Guarded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_readiness_sends_the_key(guarded):
    probe(guarded, "m", 5, bearer(KEY))  # no exception: ready


def test_readiness_fails_at_once_on_a_key_it_does_not_have(guarded):
    with pytest.raises(UserError, match="set API_KEY or API_KEY_FILE"):
        probe(guarded, "m", 5)


def test_smoke_without_the_key_says_which_setting(guarded):
    result = run_smoke(guarded, "m", "hi", timeout=5)
    assert not result.ok and "set API_KEY or API_KEY_FILE" in result.verdict


# --- generated env files ----------------------------------------------------------------

def test_secrets_stay_out_of_the_configmap_and_are_empty_in_the_env_example():
    configmap = configmap_env().splitlines()
    example = env_example().splitlines()
    for name in SECRET_FIELDS:
        assert not any(line.lstrip("#").startswith(f"{name}=") for line in configmap)
        assert f"#{name}=" in example
        assert f"#{name}_FILE=" in example


def test_every_secret_has_a_file_variant():
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert {f"{name}_FILE" for name in SECRET_FIELDS} <= aliases
