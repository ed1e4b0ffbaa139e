"""`python inference.py` against the real server, in-process vLLM, and a terminal session."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.fixture import FAST_CPU
from testbed.net import free_port
from testbed.servers import child_env
from tests.integration.conftest import ROOT, Server
from tests.support.guide_checks import QUESTION
from verification.client import ApiClient

pytestmark = pytest.mark.integration
SCRIPT = str(ROOT / "inference.py")
PROMPT = QUESTION


def inference(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=child_env(**FAST_CPU),
                          capture_output=True, text=True, timeout=timeout)


def test_api_mode_answers(shared_server: Server):
    done = inference("--mode", "api", "--url", shared_server.url, "--prompt", PROMPT, "--max-tokens", "16")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_api_mode_json_has_answer_usage_latency(shared_server: Server):
    done = inference("--url", shared_server.url, "--prompt", PROMPT, "--max-tokens", "8", "--json",
                     "--system", "Answer briefly.")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] and result["usage"]["completion_tokens"] >= 1 and result["latency_s"] > 0


def test_chat_streams_in_pieces(shared_server: Server):
    client = ApiClient(shared_server.url, "gemma-3-270m-it")
    pieces = list(client.stream_chat([{"role": "user", "content": PROMPT}], max_tokens=16))
    assert len(pieces) > 1  # token by token, not one block


@pytest.mark.starts_vllm
def test_offline_mode_answers(fixture_model: Path):
    done = inference("--mode", "offline", "--model", str(fixture_model), "--prompt", PROMPT,
                     "--max-tokens", "8", "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["answer"]  # stdout is the answer alone: vLLM's log goes to stderr


class Terminal:
    """inference.py on a pseudo-terminal, read as a user would see it."""

    def __init__(self, *args: str) -> None:
        self.fd, child = pty.openpty()
        self.process = subprocess.Popen([sys.executable, SCRIPT, *args], cwd=ROOT, env=child_env(**FAST_CPU),
                                        stdin=child, stdout=child, stderr=child, start_new_session=True)
        os.close(child)
        self.seen = ""

    def read_until(self, text: str, count: int = 1, timeout: float = 300) -> str:
        """Read until `text` has been shown `count` times in all."""
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < count:
            assert time.monotonic() < deadline, f"no {text!r} on the terminal; saw {self.seen!r}"
            if select.select([self.fd], [], [], 1)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
        return self.seen

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> int:
        code = self.process.wait(timeout=60)
        os.close(self.fd)
        return code


@pytest.mark.parametrize("ending", ["/exit\n", "\x04"], ids=["exit-command", "ctrl-d"])
def test_interactive_chat_answers_and_ends_cleanly(shared_server: Server, ending: str):
    terminal = Terminal("--mode", "api", "--interactive", "--url", shared_server.url, "--max-tokens", "16")
    terminal.read_until("you> ")
    terminal.send(PROMPT + "\n")
    seen = terminal.read_until("you> ", count=2)  # the streamed answer, then the next prompt
    answer = seen.split("model> ", 1)[1].rsplit("you> ", 1)[0]
    assert answer.strip(), seen
    terminal.send(ending)
    assert terminal.close() == 0
    assert "Traceback" not in terminal.seen


def test_server_down_is_one_line_and_exit_1():
    url = f"http://127.0.0.1:{free_port()}"
    done = inference("--url", url, "--prompt", "hi", timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "--url" in lines[0], done.stderr


@pytest.mark.parametrize("argv", [["--mode", "batch", "--prompt", "x"], ["--mode", "offline", "--prompt", "x"],
                                  [], ["--max-tokens", "0", "--prompt", "x"]])
def test_bad_options_exit_2(argv: list[str]):
    done = inference(*argv, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith("inference.py: error")
