"""smoke and the readiness wait end within their deadline and read a bounded answer (issue 30, class 6)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from entrypoint.smoke import run_smoke


class Hostile(BaseHTTPRequestHandler):
    mode: ClassVar[str] = "trickle"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.mode != "endless header":
            self.end_headers()
        else:
            self.flush_headers()
        try:
            if self.mode == "endless header":
                self.wfile.write(b"X: ")
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif self.mode == "trickle":
                for _ in range(60):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                chunk = b" " * 2**20
                for _ in range(64):
                    self.wfile.write(chunk)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("mode", ["trickle", "huge", "endless header"])
def test_a_hostile_server_fails_the_smoke_check_in_bounds(server, mode):
    Hostile.mode = mode
    result = run_smoke(server, "m", "hi", timeout=1.0)
    assert not result.ok
    assert ("larger than" if mode == "huge" else "within 1 s") in result.verdict
