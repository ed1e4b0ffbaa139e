"""The probes against hostile state folders (testbed/hostile_state.py), a bad command
line and a closed stdout: exit 0 or 1 (2 for the command line), exactly one line, no
traceback, a bounded read. No timing is asserted; a subprocess timeout only catches a hang."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entrypoint import state as state_module
from entrypoint.state import MAX_RECORD_BYTES, READY_FILE, STATE_FILE, StateProblem, read_record
from healthcheck.__main__ import one_line
from healthcheck.probes import run_probe
from testbed.hostile_state import (
    FOLDER,
    PROBE_TIMEOUT,
    READERS,
    ROOT,
    StateCase,
    build,
    handled,
    healthy_server,
    hung_cases,
    hung_servers,
    probe_argv,
    run_command,
    state_cases,
)

KINDS = state_cases()
ALL = [(case, probe) for cases in KINDS.values() for case in cases for probe in READERS[case.target]]
# In a process: one case of each kind for each file it breaks, and the issue's own examples.
NAMED = {"ready:{}", "state.json:a JSON list", "ready:'http://[::1'", "state.json:'http://127.0.0.1:99999'",
         "canary.json:consecutive_failures=\"1\"", "ready:a symlink to /dev/zero", "ready:a FIFO",
         "ready:a sparse 1 GiB file", "ready:one byte over the cap", "ready:not UTF-8",
         "ready:served name with newlines", "folder:a regular file"}
FIRSTS = {(case.kind, case.target): case for cases in KINDS.values() for case in reversed(cases)}
IN_PROCESS = list(dict.fromkeys([(case, READERS[case.target][-1]) for case in FIRSTS.values()] + [
    (case, probe) for case, probe in ALL if case.id in NAMED]))


def case_id(value: object) -> str:
    return value.id if isinstance(value, StateCase) else str(value)


@pytest.fixture(scope="module")
def health_url():
    with healthy_server() as url:
        yield url


def built(case: StateCase, root: Path, url: str) -> Path:
    try:
        return build(case, root, url)
    except PermissionError as exc:  # mknod without CAP_MKNOD
        pytest.skip(f"cannot make {case.name} here: {exc}")


def test_the_table_covers_every_file_and_the_folder():
    assert {case.target for case, _ in ALL} == set(READERS)
    assert set(NAMED) <= {case.id for case, _ in ALL}


def skip_if_unbuilt(unbuilt: set[str]) -> None:
    """After the cases that could be made: a skip naming those that could not, never a pass."""
    if unbuilt:
        pytest.skip(f"the other cases passed; cannot make here: {'; '.join(sorted(unbuilt))}")


def verdict_problem(case: StateCase, probe: str, state_dir: Path) -> str | None:
    """What is wrong with the probe's verdict on the case, or None."""
    ok, message = run_probe(probe, state_dir, time.monotonic() + PROBE_TIMEOUT)
    if (0 if ok else 1) not in case.exits:
        return f"{case.id} {probe}: {'OK' if ok else 'FAIL'}: {message}"
    if len(one_line(f"{probe}: {message}").splitlines()) != 1:
        return f"{case.id} {probe}: more than one line"
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_every_hostile_state_gets_a_verdict(tmp_path, health_url, kind):
    """The probe functions on the whole table, kind by kind: a verdict, never an exception,
    and a message that stays one line once printed."""
    problems, unbuilt = [], set()
    for n, case in enumerate(KINDS[kind]):
        for probe in READERS[case.target]:
            try:
                state_dir = build(case, tmp_path / f"{n}-{probe}", health_url)
            except PermissionError as exc:  # mknod without CAP_MKNOD
                unbuilt.add(f"{case.id} ({exc})")
                continue
            problems.append(verdict_problem(case, probe, state_dir))
    assert [p for p in problems if p] == []
    skip_if_unbuilt(unbuilt)


@pytest.mark.parametrize(("case", "probe"), IN_PROCESS, ids=case_id)
def test_probe_process_prints_one_line_and_exits_0_or_1(tmp_path, health_url, case, probe):
    run = run_command(probe_argv(probe, built(case, tmp_path, health_url)))
    assert run.code is not None, f"{probe} hung on {case.id}"
    assert handled(case, run), run


def test_an_empty_marker_does_not_pass_startup(tmp_path):
    (tmp_path / READY_FILE).write_text("{}")
    run = run_command(probe_argv("startup", tmp_path))
    assert run.code == 1 and run.lines == [f"startup: FAIL: ready marker {tmp_path / READY_FILE} has no 'url'"]


@pytest.mark.parametrize("kind", KINDS)
def test_no_read_takes_more_than_the_cap(tmp_path, health_url, monkeypatch, kind):
    taken, real_read = [0], os.read

    def counted_read(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        taken[0] += len(data)
        return data

    monkeypatch.setattr(state_module.os, "read", counted_read)
    over, unbuilt = [], set()
    for n, case in enumerate(c for c in KINDS[kind] if c.target != FOLDER):
        try:
            path = build(case, tmp_path / str(n), health_url) / case.target
        except PermissionError as exc:  # mknod without CAP_MKNOD
            unbuilt.add(f"{case.id} ({exc})")
            continue
        taken[0] = 0
        with contextlib.suppress(StateProblem):
            read_record(path, case.target)
        if taken[0] > MAX_RECORD_BYTES + 1:
            over.append((case.id, taken[0]))
    assert over == []
    skip_if_unbuilt(unbuilt)


@pytest.mark.parametrize("timeout", ["-1", "0", "-0", "nan", "inf", "-inf", "1e400", "abc", "", "5s", "3601"])
def test_a_bad_timeout_exits_2_with_one_line(tmp_path, timeout):
    run = run_command(probe_argv("ready", tmp_path, timeout))  # type: ignore[arg-type]
    assert run.code == 2 and run.stdout == "" and len(run.lines) == 1, run
    assert "--timeout" in run.stderr  # argparse takes "-inf" for an option, so not every line quotes the value


@pytest.mark.parametrize("argv", [[], ["bogus"], ["ready", "--nope"], ["ready", "--timeout"]], ids=str)
def test_a_bad_command_line_exits_2_with_one_line(argv):
    run = run_command([sys.executable, "-m", "healthcheck", *argv])
    assert run.code == 2 and len(run.lines) == 1 and run.lines[0].startswith("healthcheck: "), run


def ready_marker(folder: Path) -> Path:
    (folder / READY_FILE).write_text('{"url": "http://127.0.0.1:1", "served_model_name": "m"}')
    return folder


@pytest.mark.parametrize(("folder", "code"), [("ready", 0), ("empty", 1)])
def test_a_closed_pipe_never_changes_the_exit_code(tmp_path, folder, code):
    state_dir = ready_marker(tmp_path) if folder == "ready" else tmp_path
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(probe_argv("startup", state_dir), cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                              timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (code, b"")


def test_a_closed_stdout_never_changes_the_exit_code(tmp_path):
    done = subprocess.run(probe_argv("startup", ready_marker(tmp_path)), cwd=ROOT, stderr=subprocess.PIPE,
                          preexec_fn=lambda: os.close(1), timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")


def test_help_into_a_closed_pipe_exits_0(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "healthcheck", "--help"], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, b"")


IMPORT_CHECK = """
import os, runpy, sys
before = set(sys.modules)
sys.argv = ["healthcheck", *sys.argv[1:]]

def stop(code):  # the probe ends with os._exit: let this check run after it
    raise SystemExit(code)

os._exit = stop
try:
    runpy.run_module("healthcheck", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
# entrypoint.state and its bounded reader, both standard library only themselves.
allowed = {"healthcheck", "entrypoint", "entrypoint.state", "entrypoint.bounded_read"}
extra = sorted(name for name in set(sys.modules) - before
               if name.split(".")[0] not in sys.stdlib_module_names and name not in allowed
               and not name.startswith("healthcheck."))
print("IMPORTED", extra, file=sys.stderr)
"""


@pytest.mark.parametrize("probe", ["startup", "ready", "live"])
def test_the_probe_imports_only_the_standard_library_and_entrypoints_state_reader(tmp_path, health_url, probe):
    case = StateCase("valid", "valid", READY_FILE, lambda path, record: path.parent, frozenset({0}))
    state_dir = build(case, tmp_path, health_url)
    done = subprocess.run([sys.executable, "-c", IMPORT_CHECK, probe, "--state-dir", str(state_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert f"{probe}: OK" in done.stdout, done
    assert "IMPORTED []" in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["a silent /health", "a /health dripping an endless header"])
def test_a_server_that_never_answers_is_cut_off_at_the_timeout(tmp_path, name):
    """A dripping header keeps every socket read short: only the watchdog ends the probe."""
    with hung_servers() as urls:
        case = next(c for c in hung_cases(urls) if c.name == name and c.target == STATE_FILE)
        run = run_command(probe_argv("live", build(case, tmp_path, urls[name]), timeout=1.0))
    assert run.code == 1 and len(run.lines) == 1, run
    assert run.lines[0].startswith("live: FAIL: ")
