"""The three probes. Standard library only: they run every few seconds.

- startup: the supervisor wrote the ready marker (weights fetched, vLLM up, smoke passed);
- ready:   the marker is there and /health answers 200 now;
- live:    /health answers 200 within the timeout. It never sends a generation, so a
           busy server stays live; a dead or hung API server does not.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

from entrypoint.state import StateDir


def health_status(base_url: str, timeout: float) -> int:
    """HTTP status of GET /health; raises OSError when nothing answers in time."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    finally:
        connection.close()


def _health_verdict(base_url: str, timeout: float) -> tuple[bool, str]:
    try:
        status = health_status(base_url, timeout)
    except OSError as exc:
        return False, f"{base_url}/health did not answer: {exc.__class__.__name__}: {exc}"
    return status == 200, f"{base_url}/health -> {status}"


def startup(state: StateDir, timeout: float) -> tuple[bool, str]:
    """Passed once the supervisor marked the server ready."""
    marker = state.ready()
    if marker is None:
        return False, f"not ready yet: no ready marker in {state.root}"
    return True, f"started: {marker.get('served_model_name')} at {marker.get('url')}"


def ready(state: StateDir, timeout: float) -> tuple[bool, str]:
    """Marker present and /health 200."""
    marker = state.ready()
    if marker is None:
        return False, f"not ready: no ready marker in {state.root}"
    return _health_verdict(str(marker.get("url")), timeout)


def live(state: StateDir, timeout: float) -> tuple[bool, str]:
    """/health answers 200 (the URL comes from the state file the supervisor writes at start)."""
    current = state.state()
    if current is None:
        return False, f"not live: no supervisor state in {state.root}"
    return _health_verdict(str(current.get("url")), timeout)


PROBES = {"startup": startup, "ready": ready, "live": live}


def run_probe(name: str, state_dir: Path, timeout: float) -> tuple[bool, str]:
    """Run one probe by name."""
    return PROBES[name](StateDir(state_dir), timeout)
