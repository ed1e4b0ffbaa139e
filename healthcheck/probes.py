"""The three probes. Standard library only: they run every few seconds.

- startup: the supervisor wrote the ready marker (weights fetched, vLLM up, smoke passed);
- ready:   the marker is there and /health answers 200 now;
- live:    /health answers 200 within the timeout, and the supervisor's engine canary
           (entrypoint/canary.py) has not failed CANARY_FAILURES times in a row and
           is not stale. It never generates itself and only reads canary.json, so a busy
           server stays live; a dead or hung API server, a hung engine core (which
           vLLM's /health does not notice) and a hung supervisor do not.

A LeaderWorkerSet worker has no API: its `ready` and `live` ask whether its vLLM process
runs instead (the roles' contract is in entrypoint/state.py).
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from entrypoint.state import (
    CANARY_FILE,
    FAILED_FILE,
    READY_FILE,
    STATE_FILE,
    StateDir,
    StateProblem,
    process_alive,
    role_of,
)

# A record more than this far ahead of the clock was not written by this boot's supervisor.
FUTURE_TOLERANCE_SECONDS = 1.0


def health_status(base_url: str, timeout: float) -> int:
    """HTTP status of GET /health; raises OSError or HTTPException when nothing sane answers in
    time. `base_url` holds a literal address (the state schema), so no name lookup blocks."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    finally:
        connection.close()


def _health_verdict(base_url: str, deadline: float) -> tuple[bool, str]:
    # Each socket step gets most of what is left, so a server that accepts and never answers
    # is reported as such before the caller's watchdog ends the probe with a plain time-out.
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False, f"{base_url}/health: no time left to ask"
    try:
        status = health_status(base_url, remaining * 0.9)
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{base_url}/health did not answer: {exc.__class__.__name__}: {exc}"
    return status == 200, f"{base_url}/health -> {status}"


def startup(state: StateDir, deadline: float) -> tuple[bool, str]:
    """Passed once the supervisor marked the server ready."""
    marker = state.read(READY_FILE)
    if marker is None:
        return False, f"not ready yet: no ready marker in {state.root}"
    return True, f"started: {marker['served_model_name']} at {marker['url']}"


def _process_verdict(record: dict[str, Any]) -> tuple[bool, str]:
    """A worker's verdict: its headless vLLM process runs."""
    pid = record.get("server_pid")
    if pid is None:
        return False, "worker record has no server_pid"
    if not process_alive(pid):
        return False, f"worker's vLLM (pid {pid}) is not running"
    return True, f"worker's vLLM (pid {pid}) runs"


def ready(state: StateDir, deadline: float) -> tuple[bool, str]:
    """Marker present and /health 200 (a worker: its vLLM process runs)."""
    marker = state.read(READY_FILE)
    if marker is None:
        return False, f"not ready: no ready marker in {state.root}"
    if role_of(marker) == "worker":
        ok, message = _process_verdict(marker)
        return ok, f"{message}; joined {marker.get('leader', 'its leader')}" if ok else message
    return _health_verdict(marker["url"], deadline)


def canary_verdict(record: dict[str, Any] | None, now: float | None = None) -> tuple[bool, str]:
    """Judge the canary's last record (checked against its schema); no record (disabled, or
    not ready yet) passes."""
    if record is None:
        return True, "no canary record"
    now = time.monotonic() if now is None else now
    age = now - record["monotonic"]
    failures, limit, stale_after = record["consecutive_failures"], record["failures_limit"], record["stale_after"]
    last = f"{record['reason']}" + (f": {record['error']}" if record.get("error") else "")
    if failures >= limit:
        return False, f"engine canary failed {failures} times in a row (last: {last})"
    if age < -FUTURE_TOLERANCE_SECONDS:
        return False, f"engine canary record is {-age:.0f} s in the future: not written by this boot's supervisor"
    if age > stale_after:
        # The supervisor stopped looking: hung itself, so nothing watches vLLM any more.
        return False, f"engine canary record is {age:.0f} s old (stale after {stale_after:.0f} s)"
    return True, f"canary {max(age, 0):.0f} s ago: {last}" + (f" ({failures} failures in a row)" if failures else "")


def live(state: StateDir, deadline: float) -> tuple[bool, str]:
    """/health answers 200 (the URL comes from the state file the supervisor writes at start)
    and the engine canary does not say the engine stopped answering."""
    current = state.read(STATE_FILE)
    if current is None:
        return False, f"not live: no supervisor state in {state.root}"
    if role_of(current) == "worker":
        return _process_verdict(current)
    canary_ok, canary_message = canary_verdict(state.read(CANARY_FILE))
    if not canary_ok:
        return False, canary_message
    health_ok, health_message = _health_verdict(current["url"], deadline)
    return health_ok, f"{health_message}; {canary_message}" if health_ok else health_message


PROBES = {"startup": startup, "ready": ready, "live": live}


def run_probe(name: str, state_dir: Path, deadline: float) -> tuple[bool, str]:
    """Run one probe by name until the monotonic `deadline`; a state file the supervisor could
    not have written fails it with the reason."""
    state = StateDir(state_dir)
    try:
        failed = state.read(FAILED_FILE)
        if failed is not None:
            reason = failed["reason"]
            return False, f"the start failed and is not retried: {reason} (fix it, then restart the container)"
        return PROBES[name](state, deadline)
    except StateProblem as problem:
        return False, str(problem)
