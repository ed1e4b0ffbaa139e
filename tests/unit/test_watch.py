"""`entrypoint watch` on a state folder the test writes as the supervisor would."""

from __future__ import annotations

import io
import subprocess
import sys

from entrypoint.state import StateDir
from entrypoint.watch import Watcher, describe


def test_download_progress_from_the_folder_and_the_listing(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors.incomplete").write_bytes(b"x" * 120_000_000)
    line = describe({"phase": "download", "since": 100.0, "folder": str(folder), "total_bytes": 280_000_000}, 135.0,
                    cache=tmp_path)
    assert line == "[download] download 42% 120 MB/280 MB 35 s"


def test_a_download_folder_outside_the_cache_is_not_scanned(tmp_path):
    """phase.json names the folder; `/` or a folder elsewhere is not walked on every poll."""
    line = describe({"phase": "download", "since": 0.0, "folder": "/", "total_bytes": 10}, 1.0, cache=tmp_path)
    assert line == "[download] download 1 s"


def test_record_text_cannot_redraw_the_terminal_or_fake_a_line(tmp_path):
    state = StateDir(tmp_path)
    state.reset()
    state.write_phase("vllm\r\x1b]0;owned\x07[ready] fake\n")
    out = io.StringIO()
    watcher = Watcher(state, out, live=False)
    watcher.show(state.phase())
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue() and "\x07" not in out.getvalue()
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("[vllm]0;owned[ready] fake]")


def test_phases_without_progress_show_their_time(tmp_path):
    assert describe({"phase": "vllm", "since": 0.0}, 61.0) == "[vllm] vLLM loading and compiling 61 s"


def test_plain_lines_on_phase_change_then_ready(tmp_path):
    state = StateDir(tmp_path)
    state.reset()
    state.write_phase("vllm", server_pid=1)
    out = io.StringIO()
    watcher = Watcher(state, out, live=False)
    watcher.show(state.phase())
    watcher.show(state.phase())  # same phase, within `every`: no new line
    state.write_phase("smoke")
    state.mark_ready(url="http://127.0.0.1:8000", served_model_name="m")
    assert watcher.run(timeout=30) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[vllm] vLLM loading and compiling")
    assert lines[-1].startswith("[ready] http://127.0.0.1:8000")
    assert len(lines) == 2 and "\r" not in out.getvalue()


def test_live_redraws_one_line(tmp_path):
    state = StateDir(tmp_path)
    state.reset()
    state.write_phase("weights")
    out = io.StringIO()
    watcher = Watcher(state, out, live=True)
    watcher.show(state.phase())
    state.write_phase("vllm")
    watcher.show(state.phase())
    assert out.getvalue().count("\r\x1b[2K") == 2 and out.getvalue().count("\n") == 1


def test_a_gone_supervisor_ends_the_watch(tmp_path):
    state = StateDir(tmp_path)
    state.reset()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state.write_phase("weights")
    out = io.StringIO()
    assert Watcher(state, out, live=False).run(timeout=30, pid=gone.pid) == 1
    assert "stopped before it was ready" in out.getvalue()
