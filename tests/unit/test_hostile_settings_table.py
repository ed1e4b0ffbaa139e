"""Every case of the hostile settings table (testbed/hostile_settings.py, which
bench/reliability.md counts) ends as the CLI promises: exit 2, one line, no traceback, no
blocking on a FIFO, nothing written outside the case's folder."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testbed import hostile_settings, hostile_state

CASES = hostile_settings.cases()


def run(case: hostile_settings.SettingsCase, folder: Path) -> hostile_state.Run:
    return hostile_state.run_command(hostile_settings.render_argv(case, folder), guard=60)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[hostile_state.Run, Path]]:
    folders = {f"{c.kind}: {c.name}": tmp_path_factory.mktemp("case") for c in CASES}
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = pool.map(lambda c: run(c, folders[f"{c.kind}: {c.name}"]), CASES)
        return {key: (result, folders[key]) for key, result in zip(folders, runs, strict=True)}


def broken(case: hostile_settings.SettingsCase, folder: Path) -> set[str]:
    """What the case sets: its variables, or --env-file."""
    env, args = case.prepare(folder)
    return set(env) | ({"--env-file"} if "--env-file" in args else set())


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES])
def test_refused_with_one_line(case, outcomes, tmp_path):
    result, folder = outcomes[f"{case.kind}: {case.name}"]
    assert result.code == 2, result.stdout + result.stderr
    assert len(result.lines) == 1 and result.lines[0].startswith("error: "), result.lines
    # Refused for the case's own break, not for something every case shares.
    assert any(re.match(rf"error: {re.escape(name)}[= ]", result.lines[0]) for name in broken(case, tmp_path)), (
        result.lines)
    assert "Traceback" not in result.stderr
    assert not (folder / "cache").exists()  # nothing created, not even the cache


def test_every_kind_of_the_issue_is_in_the_table():
    assert set(hostile_settings.KINDS) >= {"env file", "numbers", "names that become paths or flags", "URLs",
                                           "managed flags in EXTRA_ARGS", "secrets"}
    assert all(hostile_settings.KINDS.values())
