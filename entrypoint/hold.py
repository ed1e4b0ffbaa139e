"""FAILED_START=hold: a start that failed for a reason no restart mends (a wrong setting, a
missing device, the hub still unreachable after the client's own retries) stays down with
its reason instead of exiting into a restart loop.

Compose restarts `serve` whenever it exits (`restart: unless-stopped`, which also brings it
back after a reboot), so compose/compose.yaml sets FAILED_START=hold: the supervisor prints
its lines, leaves them in the state folder (entrypoint/state.py's failed record, which every
probe and `entrypoint watch` report) and waits for its stop. Kubernetes backs off restarts
by itself and shows the termination message, so its manifests leave FAILED_START unset (exit).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from entrypoint.errors import ERROR_PREFIX, SettingsError, UserError
from entrypoint.state import DEFAULT_STATE_DIR, StateDir

log = logging.getLogger("entrypoint")


def holding(environ: Mapping[str, str]) -> bool:
    """Whether a failed start holds (FAILED_START=hold) rather than exits (the default)."""
    return environ.get("FAILED_START", "").strip().lower() == "hold"


def unmendable(exc: UserError) -> bool:
    """A failure the same start would meet again: settings, doctor, the hub after its retries."""
    from entrypoint.weights import HubUnreachable  # the hub client's dependencies: only a failed start needs them

    return isinstance(exc, (SettingsError, HubUnreachable))


def state_dir(environ: Mapping[str, str]) -> Path:
    # The settings may be what failed, so STATE_DIR is taken as given when it is absolute.
    given = environ.get("STATE_DIR", "").strip()
    return Path(given) if given.startswith("/") else DEFAULT_STATE_DIR


def hold(exc: UserError, environ: Mapping[str, str]) -> int:
    """Print the failure, record it for the probes, wait for SIGTERM/SIGINT; the failure's exit code."""
    for line in exc.message.splitlines():
        print(f"{ERROR_PREFIX}{line}", file=sys.stderr, flush=True)
    try:
        StateDir(state_dir(environ)).mark_failed(exc.message.splitlines()[0][:2000], exc.exit_code)
    except (OSError, ValueError) as problem:
        log.warning("could not record the failed start for the probes: %s", problem)
    log.info("held, not restarted (FAILED_START=hold): fix the cause, then restart the container")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(exc.exit_code))
    while True:
        signal.pause()


def serve_or_hold(serve: Callable[[], int], environ: Mapping[str, str] | None = None) -> int:
    """serve()'s status; with FAILED_START=hold an unmendable failure holds instead of raising."""
    environ = os.environ if environ is None else environ
    try:
        return serve()
    except UserError as exc:
        if holding(environ) and unmendable(exc):
            return hold(exc, environ)
        raise
