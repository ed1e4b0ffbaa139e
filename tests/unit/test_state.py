"""The state folder's contract: the schema is checked on write as on read."""

from __future__ import annotations

import math

import pytest

from entrypoint.state import READY_FILE, StateDir, StateProblem

STATE = {"url": "http://127.0.0.1:8000", "served_model_name": "m", "supervisor_pid": 1, "server_pid": 2,
         "model_path": "/models/m", "fallback": False, "server_started_at": 1.5}


def test_what_the_supervisor_writes_reads_back(tmp_path):
    state = StateDir(tmp_path)
    state.write_state(**STATE)
    state.mark_ready(url="http://[::1]:8000", served_model_name="m", server_answered_at=1.0, at=2.0)
    assert state.state() == STATE and state.ready()["url"] == "http://[::1]:8000"


@pytest.mark.parametrize("change", [{"url": "http://[::1"}, {"url": "http://127.0.0.1:99999"},
                                    {"url": "http://localhost.example:8000"}, {"server_pid": "2"},
                                    {"fallback": 1}, {"server_started_at": math.inf}, {"served_model_name": None}],
                         ids=str)
def test_a_record_the_probes_would_refuse_is_not_written(tmp_path, change):
    with pytest.raises(ValueError, match=next(iter(change))):
        StateDir(tmp_path).write_state(**{**STATE, **change})
    assert not (tmp_path / "state.json").exists()


def test_a_missing_key_is_not_written(tmp_path):
    with pytest.raises(ValueError, match="served_model_name"):
        StateDir(tmp_path).mark_ready(url="http://127.0.0.1:8000")


def test_read_says_why_and_the_lenient_accessors_say_none(tmp_path):
    (tmp_path / READY_FILE).write_text('{"url": "http://127.0.0.1:1", "served_model_name": 3}')
    with pytest.raises(StateProblem, match=r"ready marker .*'served_model_name' is 3; expected a string"):
        StateDir(tmp_path).read(READY_FILE)
    assert StateDir(tmp_path).ready() is None
    assert StateDir(tmp_path / "absent").read(READY_FILE) is None
