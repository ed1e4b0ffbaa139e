"""What every benchmark here shares: the machine's facts, servers (started, waited for
and stopped with the entrypoint's own helpers) and the report files."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.start_phases import StampedLog
from entrypoint.child import ChildProcess
from entrypoint.errors import UserError
from entrypoint.readiness import NotReadyYet, ServerExited, poll_until, wait_until_ready
from entrypoint.settings import Settings
from entrypoint.state import StateDir
from testbed.fixture import served_fixture
from verification import runs
from verification.runs import machine_facts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
READY_TIMEOUT = 1800.0  # a cold start on 2 cores takes minutes; this only bounds a hang
STOP_GRACE_SECONDS = 60.0  # a loaded server drains its engine first; past this its group is killed


def cpu_facts() -> dict[str, object]:
    """What the numbers depend on (verification.runs.machine_facts), under the bench reports' key names."""
    facts = machine_facts()
    facts["flags"] = facts.pop("cpu_flags")
    return facts


def cpu_fixture(model_path: Path | str) -> dict[str, str]:
    """The CPU default on loopback, serving the fixture weights at `model_path` with their profile."""
    return {"PLATFORM": "cpu", "HOST": "127.0.0.1", **served_fixture(model_path)}


def wait_until(check: Callable[[], bool], alive: Callable[[], bool], what: str, poll: float) -> float:
    """Seconds until check() holds; exits if the server dies first or READY_TIMEOUT passes."""
    def attempt() -> None:
        if not alive():
            raise ServerExited(f"server died before it was ready ({what})")
        if not check():
            raise NotReadyYet(what)

    try:
        return poll_until(attempt, time.monotonic() + READY_TIMEOUT, poll)
    except ServerExited as exc:
        raise SystemExit(str(exc)) from None
    except NotReadyYet:
        raise SystemExit(f"not ready after {READY_TIMEOUT:.0f} s ({what})") from None


@contextlib.contextmanager
def server(argv: list[str], env: dict[str, str], log: Path, stamped: bool = False) -> Iterator[ChildProcess]:
    """The entrypoint's ChildProcess with its output in `log`, stopped (its whole group) on leaving;
    stamped: each line with the seconds since spawn in front (bench/start_phases.py reads them)."""
    with log.open("w") as sink:
        output = StampedLog(sink, time.monotonic()) if stamped else sink
        child = ChildProcess(argv, env, output)  # type: ignore[arg-type]
        try:
            yield child
        finally:
            child.stop(STOP_GRACE_SECONDS)


def bundle_server(env: dict[str, str], log: Path) -> contextlib.AbstractContextManager[ChildProcess]:
    """`python -m entrypoint serve` from this checkout with `env` as its whole environment."""
    return server([sys.executable, "-m", "entrypoint", "serve"], {**env, "PYTHONPATH": pythonpath(env)}, log)


def pythonpath(env: dict[str, str]) -> str:
    """The checkout after whatever PYTHONPATH `env` already has (a network guard goes first)."""
    return ":".join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))


def wait_vllm(settings: Settings, child: ChildProcess, log: Path, poll: float) -> float:
    """Seconds until vLLM answers as the supervisor waits for it (entrypoint.readiness)."""
    try:
        return wait_until_ready(settings.base_url, settings.served_model_name, time.monotonic() + READY_TIMEOUT,
                                child.poll, poll=poll)
    except UserError as exc:
        raise SystemExit(f"{exc} (see {log})") from None


def wait_bundle(state_dir: Path, child: ChildProcess, log: Path, poll: float) -> float:
    """Seconds until the supervisor leaves its ready marker (what `healthcheck ready` reads)."""
    state = StateDir(state_dir)
    return wait_until(lambda: state.ready() is not None, lambda: child.poll() is None, f"see {log}", poll)


def write_report(name: str, result: dict, markdown: str, folder: Path = RESULTS) -> None:
    """<folder>/<name>.json and .md (bench/results by default), and the Markdown on stdout."""
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_report(folder, name, result, markdown)
    print(markdown)
