"""Settings fuzz: any environment ends in valid settings or in exit 2 with one line per problem, never a traceback.

Hypothesis draws environments over the bundle's own variable names (plus a stranger)
with arbitrary text: unicode, empty and blank values, huge and odd numbers, JSON-ish and
deeply nested text, shell quotes, over-long paths, NUL bytes and undecodable bytes. In
process, `load_settings` and the `render`/`settings` commands must succeed or raise
SettingsError whose every line names one variable; a few environments also go through
`python -m entrypoint render`, which must exit 0 or 2 with only `error:` lines.
Values shaped like each setting's type (tests/support/setting_values.py) reach the
render often: every environment of them renders a command or is refused line by line.
Random draws rarely put a rare value on the one variable it breaks, so every edge
value is also tried on every variable. Warnings count as failures: they are stray
stderr lines too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.cli import parse_args, run
from entrypoint.errors import SettingsError
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from entrypoint.settings import setting_names
from tests.support.draws import Draws
from tests.support.setting_values import ALL_SETTINGS, assert_one_line_per_problem
from tests.support.setting_values import environments as shaped_environments

ROOT = Path(__file__).parents[2]
NAMES = sorted(setting_names())
EDGE_VALUES = [
    "", " ", "\t", "0", "-0", "1", "-1", "1.5", "1e3", "1e999", "nan", "inf", "-inf", "0x10", "1_000", "٣",
    "9" * 400, "true", "False", "yes", "null", "None", "auto", "npu", "cuda", "cpu", "{}", "[]", '{"a": 1e999}',
    '{"a": NaN}', "[" * 3000, "{" * 3000, "(" * 3000, "'", '"', "\\", "$(id)", "a\nb", "::1", "0.0.0.0",
    "http://", "https://h/", "/", "/" + "a" * 5000, "/tmp/x\x00y", "owner/name", "google/gemma-3-270m-it",
    "modelscope", "x\udcffy", "\U0001f600", "a\rb", "/a\u2028b",
]
values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(EDGE_VALUES),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=8).map(json.dumps),
)
environments = st.dictionaries(st.sampled_from([*NAMES, "NOT_A_SETTING"]), values, max_size=8)


def run_command(argv: list[str], environ: dict[str, str]) -> None:
    """One CLI command in process, its output discarded."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert run(parse_args(argv), environ=environ) == 0


pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize("name", NAMES)
def test_every_edge_value_on_every_variable(name: str) -> None:
    for value in EDGE_VALUES:
        try:
            load_settings({name: value})
        except SettingsError as error:
            assert_one_line_per_problem(error)


def test_any_environment_gives_settings_or_one_line_per_problem() -> None:
    draws = Draws()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(environments)
    def check(environ: dict[str, str]) -> None:
        draws.drawn()
        try:
            run_command(["render", "--format", "json"], environ)
            run_command(["render"], environ)
            run_command(["settings"], environ)
            draws.reached("rendered")
        except SettingsError as error:
            assert_one_line_per_problem(error)
            draws.reached("refused")

    check()
    draws.assert_share("rendered", 0.05)
    draws.assert_share("refused", 0.5)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(NAMES), values.filter(lambda v: "\x00" not in v), min_size=1, max_size=6))
def test_the_command_line_exits_0_or_2_without_a_traceback(environ: dict[str, str]) -> None:
    base = {"PATH": os.environ["PATH"], "HOME": "/nonexistent-home", "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "entrypoint", "render"], env={**base, **environ}, cwd=ROOT,
                          capture_output=True, timeout=60, check=False)
    stderr = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    assert done.returncode in (0, 2), stderr
    if done.returncode == 2:
        lines = stderr.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), stderr


def test_shaped_values_render_a_command_or_one_line_per_problem() -> None:
    draws = Draws()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(shaped_environments(ALL_SETTINGS))
    def check(environ: dict[str, str]) -> None:
        draws.drawn()
        try:
            command = render_command(load_settings(environ), "/models/m")
        except SettingsError as error:
            assert_one_line_per_problem(error)
            return
        assert command.argv and all(isinstance(word, str) for word in command.argv)
        assert json.loads(command.to_json())["argv"] == command.shown_argv() and command.to_shell()
        draws.reached("rendered")

    check()
    draws.assert_share("rendered", 0.1)
