"""A start no restart mends holds with its reason (FAILED_START=hold, set by Compose) instead
of exiting into `restart: unless-stopped`'s loop; the probes and `entrypoint watch` report it,
and `make up` prints it (tests/container/test_compose_failed_start.py)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

from entrypoint.state import FAILED_FILE, StateDir
from entrypoint.watch import FAILED_EXIT, Watcher
from tests.unit.test_image_build import ROOT

REASON = "MAX_NUM_SEQS='lots'"


def serve(tmp_path, **env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k not in ("EXTRA_ARGS", "FAILED_START")}
    return subprocess.Popen([sys.executable, "-m", "entrypoint", "serve"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**environ, "PLATFORM": "cpu", "MAX_NUM_SEQS": "lots",
                                 "STATE_DIR": str(tmp_path / "state"), **env})


def probe(name: str, state_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "healthcheck", name, "--state-dir", str(state_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_without_hold_a_bad_setting_exits_2_at_once(tmp_path):
    process = serve(tmp_path)
    assert process.wait(timeout=120) == 2
    assert REASON in process.stderr.read()
    assert not (tmp_path / "state" / FAILED_FILE).exists()


def test_with_hold_it_stays_down_with_its_reason_until_stopped(tmp_path):
    process = serve(tmp_path, FAILED_START="hold")
    record = tmp_path / "state" / FAILED_FILE
    deadline = time.monotonic() + 120
    while not record.exists():
        assert process.poll() is None and time.monotonic() < deadline, "no failed record"
        time.sleep(0.2)
    for name in ("startup", "ready", "live"):
        done = probe(name, tmp_path / "state")
        assert done.returncode == 1 and REASON in done.stdout and "not retried" in done.stdout, done.stdout
    assert process.poll() is None  # held, not exited into a restart
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 2
    assert process.stderr.read().count(f"error: {REASON}") == 1


def test_watch_reports_the_failed_start_and_a_new_start_forgets_it(tmp_path):
    state = StateDir(tmp_path)
    state.mark_failed("model hub unreachable at MODELSCOPE_ENDPOINT=http://hub for MODEL_ID=x", 1)
    out = io.StringIO()
    assert Watcher(state, out, live=False).run(timeout=5) == FAILED_EXIT
    assert out.getvalue() == "[failed] model hub unreachable at MODELSCOPE_ENDPOINT=http://hub for MODEL_ID=x\n"
    state.reset()
    assert state.failed() is None
