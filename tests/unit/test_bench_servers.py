"""bench/ starts, waits for and stops servers with the entrypoint's helpers: a stand-in that
answers like vLLM's /health and /v1/models (the bench's plumbing is the subject, not vLLM)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.common import server, wait_bundle, wait_vllm
from bench.startup import serve_environ
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from entrypoint.state import StateDir
from testbed.net import free_port

ANSWERS = textwrap.dedent("""
    import http.server, json, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "m"}]} if self.path == "/v1/models" else {}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    print("stand-in listening", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""")


def test_a_server_is_waited_for_like_the_supervisor_does_and_stopped_on_leaving(tmp_path: Path):
    port, log = free_port(), tmp_path / "server.log"
    settings = SimpleNamespace(base_url=f"http://127.0.0.1:{port}", served_model_name="m")
    with server([sys.executable, "-c", ANSWERS, str(port)], {}, log) as child:
        print(f"ready after {wait_vllm(settings, child, log, poll=0.05):.2f} s")  # type: ignore[arg-type]
        assert child.poll() is None
    assert child.poll() is not None
    output = log.read_text()
    assert "stand-in listening" in output  # its output went to the log, not to our stdout
    assert '"GET /v1/models' in output  # ready means the model list answered, as the supervisor waits


def test_a_server_that_dies_first_is_one_line_naming_its_log(tmp_path: Path):
    log = tmp_path / "server.log"
    settings = SimpleNamespace(base_url=f"http://127.0.0.1:{free_port()}", served_model_name="m")
    with server([sys.executable, "-c", "print('no such flag'); raise SystemExit(3)"], {}, log) as child, \
            pytest.raises(SystemExit, match=r"exited with status 3 .*server.log"):
        wait_vllm(settings, child, log, poll=0.05)  # type: ignore[arg-type]
    assert "no such flag" in log.read_text()


def test_the_bundle_is_ready_when_its_ready_marker_is(tmp_path: Path):
    marks = "import time; from entrypoint.state import StateDir; import pathlib, sys; time.sleep(0.3); " \
            "s = StateDir(pathlib.Path(sys.argv[1])); s.reset(); " \
            "s.mark_ready(url='http://127.0.0.1:1', served_model_name='m', at=1); time.sleep(60)"
    log = tmp_path / "bundle.log"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with server([sys.executable, "-c", marks, str(tmp_path / "state")], env, log) as child:
        print(f"ready after {wait_bundle(tmp_path / 'state', child, log, poll=0.05):.2f} s")
        assert StateDir(tmp_path / "state").ready() is not None and child.poll() is None


def test_the_startup_bench_serves_the_fixture_with_its_profile(tmp_path: Path, monkeypatch):
    # The fixture weights are a base model: with the default profile the smoke check waits for "Paris".
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("FIXTURE_WEIGHTS", str(tmp_path))
    environ = serve_environ(None, [])
    settings = load_settings(environ)
    assert (settings.model_profile, settings.smoke_expect) == ("gemma-3-270m-fixture", "")
    assert str(tmp_path) in render_command(settings, environ["MODEL_SOURCE"]).argv
    # Weights of one's own keep the default profile; --extra still wins.
    assert "MODEL_PROFILE" not in serve_environ("/models/m", [])
    assert serve_environ(None, ["MODEL_PROFILE=gemma-3-270m-it"])["MODEL_PROFILE"] == "gemma-3-270m-it"
