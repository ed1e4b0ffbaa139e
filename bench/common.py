"""What every benchmark here shares: the machine's facts, ports, weights and the report files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from verification.runs import machine_facts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
READY_TIMEOUT = 1800.0  # a cold start on 2 cores takes minutes; this only bounds a hang


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_facts() -> dict[str, object]:
    """What the numbers depend on (verification.runs.machine_facts), under the bench reports' key names."""
    facts = machine_facts()
    facts["flags"] = facts.pop("cpu_flags")
    return facts


def fixture_path() -> str:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_fixture_model.py")],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def wait_until(check: Callable[[], bool], alive: Callable[[], bool], what: str, poll: float,
               timeout: float = READY_TIMEOUT) -> float:
    """Seconds until check() holds; exits if the server dies first or the timeout passes."""
    started = time.monotonic()
    while not check():
        if not alive():
            raise SystemExit(f"server died before it was ready ({what})")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not ready after {timeout} s ({what})")
        time.sleep(poll)
    return time.monotonic() - started


def start_logged(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server in its own session (so `stop` can reach its children), output into `log`."""
    with log.open("wb") as sink:
        return subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to the whole session after a minute."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def vllm_ready(url: str, name: str) -> bool:
    """vLLM's /health is 200 and /v1/models lists the served name."""
    try:
        if requests.get(f"{url}/health", timeout=2).status_code != 200:
            return False
        models = requests.get(f"{url}/v1/models", timeout=2).json()
        return name in [m["id"] for m in models.get("data", [])]
    except (requests.RequestException, ValueError):
        return False


def write_report(name: str, result: dict, markdown: str, folder: Path = RESULTS) -> None:
    """<folder>/<name>.json and .md (bench/results by default), and the Markdown on stdout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown)
    print(markdown)
