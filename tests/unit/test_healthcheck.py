"""Healthcheck exit codes against a stand-in /health (the real server is in tests/integration)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from entrypoint.state import StateDir

ROOT = Path(__file__).parents[2]


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    server.status = 200  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()  # else its socket's ResourceWarning lands in a later warnings-as-errors test


def write_state(state: StateDir, url: str) -> None:
    """state.json as the supervisor writes it at start."""
    state.write_state(url=url, served_model_name="m", supervisor_pid=1, server_pid=2)


def probe(name: str, state_dir: Path, timeout: float = 10.0) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "healthcheck", name, "--state-dir", str(state_dir),
                           "--timeout", str(timeout)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout.strip()


def test_nothing_started_fails_every_probe(tmp_path):
    for name in ("startup", "ready", "live"):
        code, line = probe(name, tmp_path)
        assert code == 1 and line.startswith(f"{name}: FAIL")


def test_started_but_not_ready(tmp_path, health_server):
    url = f"http://127.0.0.1:{health_server.server_port}"
    write_state(StateDir(tmp_path), url)
    assert probe("live", tmp_path)[0] == 0
    assert probe("startup", tmp_path)[0] == 1
    assert probe("ready", tmp_path)[0] == 1


def test_ready_and_live(tmp_path, health_server):
    url = f"http://127.0.0.1:{health_server.server_port}"
    state = StateDir(tmp_path)
    write_state(state, url)
    state.mark_ready(url=url, served_model_name="m")
    assert [probe(name, tmp_path)[0] for name in ("startup", "ready", "live")] == [0, 0, 0]
    health_server.status = 503
    assert probe("ready", tmp_path)[0] == 1 and probe("live", tmp_path)[0] == 1


def test_server_gone_fails_ready_and_live(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = StateDir(tmp_path)
    write_state(state, f"http://127.0.0.1:{port}")
    state.mark_ready(url=f"http://127.0.0.1:{port}", served_model_name="m")
    assert probe("ready", tmp_path)[0] == 1 and probe("live", tmp_path)[0] == 1


def test_hung_server_fails_within_the_timeout(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        write_state(StateDir(tmp_path), f"http://127.0.0.1:{silent.getsockname()[1]}")
        code, line = probe("live", tmp_path, timeout=1.0)  # probe()'s subprocess timeout guards a hang
    assert code == 1 and "live: FAIL" in line


def canary_record(failures: int = 0, limit: int = 3, age: float = 0.0, stale_after: float = 60.0) -> dict:
    """A canary.json as the supervisor writes it, `age` seconds old."""
    return {"ok": failures == 0, "reason": "the 1-token completion answered" if not failures else "no answer",
            "seconds": 0.1, "error": None if not failures else "ReadTimeout: read timed out",
            "at": time.time() - age, "monotonic": time.monotonic() - age, "consecutive_failures": failures,
            "failures_limit": limit, "interval": 5.0, "stale_after": stale_after}


# The records' ages are made when the test runs, not at collection: a slow collection must not age them.
@pytest.mark.parametrize(("record", "live"), [
    ({}, 0),
    ({"failures": 1}, 0),
    ({"failures": 2, "limit": 3}, 0),
    ({"failures": 3, "limit": 3}, 1),
    ({"failures": 4, "limit": 3}, 1),
    ({"age": 120.0, "stale_after": 60.0}, 1),
    ({"age": 30.0, "stale_after": 60.0}, 0),
], ids=["ok", "one-failure", "below-limit", "at-limit", "above-limit", "stale", "recent"])
def test_live_judges_the_canary_record(tmp_path, health_server, record, live):
    url = f"http://127.0.0.1:{health_server.server_port}"
    state = StateDir(tmp_path)
    write_state(state, url)
    state.mark_ready(url=url, served_model_name="m")
    state.write_canary(**canary_record(**record))
    code, line = probe("live", tmp_path)
    assert code == live, line
    assert probe("ready", tmp_path)[0] == 0  # readiness does not look at the canary


def test_live_failure_line_names_the_canary(tmp_path, health_server):
    url = f"http://127.0.0.1:{health_server.server_port}"
    state = StateDir(tmp_path)
    write_state(state, url)
    state.write_canary(**canary_record(failures=3))
    assert probe("live", tmp_path)[1] == ("live: FAIL: engine canary failed 3 times in a row "
                                          "(last: no answer: ReadTimeout: read timed out)")
    state.write_canary(**canary_record(age=500.0))
    assert "stale" in probe("live", tmp_path)[1]


def test_failed_canary_does_not_hide_a_dead_health(tmp_path, health_server):
    url = f"http://127.0.0.1:{health_server.server_port}"
    state = StateDir(tmp_path)
    write_state(state, url)
    state.write_canary(**canary_record())
    health_server.status = 503
    assert probe("live", tmp_path)[0] == 1


def test_reset_forgets_the_canary(tmp_path):
    state = StateDir(tmp_path)
    state.write_canary(**canary_record(failures=5))
    state.reset()
    assert state.canary() is None
