"""Files the supervisor leaves for the probes: where the server is, whether it is ready,
and what the engine canary saw last.

Kept free of heavy imports: the healthcheck imports it every few seconds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path("/tmp/ascend-serve")
STATE_FILE = "state.json"
READY_FILE = "ready"
CANARY_FILE = "canary.json"
PHASE_FILE = "phase.json"


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class StateDir:
    """The supervisor's state folder: `phase.json` and `state.json` from start, `ready` once
    smoke passed, `canary.json` while the canary runs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def reset(self) -> None:
        """Forget an earlier run: a stale ready marker must not make a new start look ready."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name in (READY_FILE, STATE_FILE, CANARY_FILE, PHASE_FILE):
            (self.root / name).unlink(missing_ok=True)

    def write_state(self, **data: Any) -> None:
        """Record where the server listens and who runs it."""
        _write_atomic(self.root / STATE_FILE, data)

    def mark_ready(self, **data: Any) -> None:
        """Say the server answered the smoke check."""
        _write_atomic(self.root / READY_FILE, data)

    def write_canary(self, **data: Any) -> None:
        """Record the canary's last look (never a secret: the healthcheck prints from it)."""
        _write_atomic(self.root / CANARY_FILE, data)

    def write_phase(self, phase: str, **data: Any) -> None:
        """Record the phase the start is in and since when (`entrypoint watch` shows it)."""
        _write_atomic(self.root / PHASE_FILE, {"phase": phase, "since": time.time(), "pid": os.getpid(), **data})

    def phase(self) -> dict[str, Any] | None:
        """The start's current phase record, or None before the supervisor wrote one."""
        return _read(self.root / PHASE_FILE)

    def state(self) -> dict[str, Any] | None:
        """The state file, or None before the supervisor wrote it."""
        return _read(self.root / STATE_FILE)

    def ready(self) -> dict[str, Any] | None:
        """The ready marker, or None when not ready."""
        return _read(self.root / READY_FILE)

    def canary(self) -> dict[str, Any] | None:
        """The canary's last record, or None when it has not run (disabled, or not ready yet)."""
        return _read(self.root / CANARY_FILE)
