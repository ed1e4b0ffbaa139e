"""The one scrubber: every line the bundle prints or writes loses its secrets (issue 30, class 1)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from entrypoint import scrub
from entrypoint.errors import SettingsError, run_cli
from entrypoint.resolver import load_settings
from entrypoint.startup_errors import write_termination_message
from entrypoint.state import StateDir

KEY = "sk-live-0123456789abcdef"
TOKEN = "ms-token-abcdefghijkl"
CPU = {"PLATFORM": "cpu"}


@pytest.mark.parametrize("text", [
    "GET https://user:p4ssw0rd@hub.example/api failed",
    "GET https://t0ken-only@hub.example/api failed",
    "https://hub.example/api?Revision=master&access_token=abc123def&x=1",
    "https://hub.example/api?sig=deadbeef42",
    "https://hub.example/api;api_key=deadbeef42",
    "echoed headers: {'Authorization': 'Bearer abc123def456'}",
    'echoed: "authorization": "Basic dXNlcjpwYXNz"',
    "Cookie: session=abc123def456",
    "X-Api-Key: abc123def456",
])
def test_credentials_in_urls_and_headers_are_masked(text):
    cleaned = scrub.scrub(text)
    assert "***" in cleaned
    for secret in ("p4ssw0rd", "t0ken-only", "abc123def", "deadbeef42", "dXNlcjpwYXNz", "abc123def456"):
        assert secret not in cleaned


def test_plain_text_is_left_alone():
    text = "vLLM 0.18.0 serving gemma-3-270m-it on http://127.0.0.1:8000/v1?Revision=master"
    assert scrub.scrub(text) == text


def test_a_remembered_secret_is_masked_anywhere():
    scrub.remember(KEY, "ab")  # too short to hunt for in text
    assert scrub.scrub(f"args: --api-key={KEY}, ab") == "args: --api-key=***, ab"


def test_settings_remember_the_secrets_they_were_given(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(TOKEN + "\n")
    load_settings({**CPU, "API_KEY": KEY, "MODELSCOPE_TOKEN_FILE": str(key_file)})
    assert scrub.scrub(f"a hub echoed {TOKEN} and {KEY}") == "a hub echoed *** and ***"


def test_a_secret_is_remembered_even_when_the_settings_fail():
    with pytest.raises(SettingsError):
        load_settings({**CPU, "API_KEY": KEY, "MAX_NUM_SEQS": "many"})
    assert KEY not in scrub.scrub(KEY)


@pytest.mark.parametrize("extra", [f"--api-key '{KEY}", f"--api-key {KEY} \\", f'--x "{KEY}'])
def test_extra_args_that_do_not_parse_are_named_not_quoted(extra):
    with pytest.raises(SettingsError) as raised:
        load_settings({**CPU, "EXTRA_ARGS": extra})
    (line,) = raised.value.lines
    assert line.startswith("EXTRA_ARGS=(not shown") and KEY not in line


@pytest.mark.parametrize("endpoint", ["http://user:pa ss@hub.example", "http://hub.example/?token=t0psecret1"])
def test_an_endpoint_is_never_printed_with_its_credentials(endpoint, capsys):
    def body() -> int:
        load_settings({**CPU, "MODELSCOPE_ENDPOINT": endpoint})
        return 0
    assert run_cli(body) == 2
    err = capsys.readouterr().err
    assert "pa ss" not in err and "t0psecret1" not in err and err.count("\n") == 1


def test_cli_errors_log_lines_state_and_termination_message_are_scrubbed(tmp_path, capsys):
    scrub.remember(KEY)

    def body() -> int:
        raise SettingsError([f"something echoed {KEY}"])
    run_cli(body)
    assert KEY not in capsys.readouterr().err

    stream = io.StringIO()
    logger = logging.getLogger("test-scrub")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    scrub.install_log_filter(logger)
    logger.warning("hub said %s", KEY)
    logger.removeHandler(handler)
    assert stream.getvalue() == "hub said ***\n"

    (tmp_path / "state").mkdir()
    state = StateDir(tmp_path / "state")
    state.write_phase("downloading", message=f"hub said {KEY}")
    assert KEY not in json.dumps(state.phase())

    termination = tmp_path / "termination-log"
    write_termination_message(str(termination), f"failed with {KEY}")
    assert termination.read_text() == "failed with ***\n"


@pytest.mark.parametrize(("name", "value"), [("MAX_NUM_SEQS", "9" * 5000), ("SMOKE_MAX_TOKENS", "+" + "1" * 4400),
                                             ("OMP_NUM_THREADS", "9" * 5000)])
def test_a_huge_number_is_refused_before_conversion_in_one_short_line(name, value):
    """Class 3: the grammar's length bound comes before int(), whoever reads the value first."""
    with pytest.raises(SettingsError) as raised:
        load_settings({**CPU, name: value})
    line = next(line for line in raised.value.lines if line.startswith(f"{name}="))
    assert "5000 characters" in line or "4401 characters" in line
    assert len(line) < 400


def test_a_signed_number_is_read_the_same_by_the_cpu_tuning_and_the_settings():
    assert load_settings({**CPU, "MAX_NUM_SEQS": "+5000"}).max_num_seqs == 5000


# --- shapes refused at settings time (class 4) and the termination log (class 10) ---------------

@pytest.mark.parametrize(("name", "value", "reason"), [
    ("HOST", "::1%]x", "zone"), ("HOST", "127.0.0.1%eth0", "zone"),
    ("MODEL_CACHE_DIR", "/models ", "white space"), ("STATE_DIR", " /tmp/s", "white space"),
    ("API_KEY_FILE", "/run/key\t", "white space"), ("TERMINATION_LOG", "relative.log", "absolute"),
])
def test_shapes_that_cannot_work_are_refused(name, value, reason):
    with pytest.raises(SettingsError) as raised:
        load_settings({**CPU, name: value})
    assert any(line.startswith(f"{name}=") and reason in line for line in raised.value.lines)


def test_an_ipv6_zone_is_an_address():
    assert load_settings({**CPU, "HOST": "fe80::1%eth0"}).host == "fe80::1%eth0"


@pytest.mark.parametrize(("environ", "named"), [({"METRICS_PORT": "8000"}, "METRICS_PORT=8000: PORT"),
                                                ({"PORT": "9464"}, "METRICS_PORT=9464: PORT")])
def test_every_listening_port_is_distinct(environ, named):
    with pytest.raises(SettingsError) as raised:
        load_settings({**CPU, **environ})
    assert any(line.startswith(named) for line in raised.value.lines)


def test_the_termination_log_overwrites_only_a_termination_message(tmp_path):
    someone = tmp_path / "notes.txt"
    someone.write_text("line one\nline two\n")
    write_termination_message(str(someone), "vLLM exited")
    assert someone.read_text() == "line one\nline two\n"
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "link").symlink_to(target)
    write_termination_message(str(tmp_path / "link"), "vLLM exited")
    assert target.read_text() == ""
    earlier = tmp_path / "termination-log"
    write_termination_message(str(earlier), "first")
    write_termination_message(str(earlier), "second")
    assert earlier.read_text() == "second\n"
