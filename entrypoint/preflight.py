"""Checks of the machine before anything starts: free port, writable folders.

The guide checks the port by hand (`ss -lntp | grep ':8000 '`); here a bind attempt
does the same on any OS, and the folders are created and written once.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from entrypoint.settings import Settings


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def unwritable_reason(path: Path) -> str | None:
    """Why this user cannot create files in `path` (created if missing), or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def ownership_hint(path: Path) -> str:
    """How to fix a folder owned by another user (a host-mounted cache, typically)."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return ""
    owner = existing.stat().st_uid
    if owner == os.getuid():
        return ""
    # A bind mount keeps the host's owner; the fixes are on the host or in how the container runs.
    return (f"; {existing} belongs to uid {owner}: chown -R {os.getuid()} the host folder mounted there, "
            f"or run as its owner (docker --user {owner}, compose `user:`, Kubernetes fsGroup)")


def writable_dirs(settings: Settings) -> dict[str, Path]:
    """The folders the server writes to, by setting name."""
    dirs = {"MODEL_CACHE_DIR": settings.model_cache_dir, "STATE_DIR": settings.state_dir}
    # The compile cache defaults to a folder on MODEL_CACHE_DIR: checked with it, not reported twice.
    if settings.compile_cache_dir is not None and not settings.compile_cache_dir.is_relative_to(
            settings.model_cache_dir):
        dirs["COMPILE_CACHE_DIR"] = settings.compile_cache_dir
    if settings.ascend_log_path is not None:
        dirs["ASCEND_LOG_PATH"] = settings.ascend_log_path
    return dirs


def preflight_errors(settings: Settings, check_port: bool = True) -> list[str]:
    """Every problem of the machine that would stop the server, one line each."""
    errors = []
    for name, path in writable_dirs(settings).items():
        reason = unwritable_reason(path)
        if reason:
            errors.append(f"{name}={path}: cannot write there ({reason}); allowed: a directory "
                          f"that user id {os.getuid()} can write{ownership_hint(path)}")
    if check_port and port_in_use(settings.host, settings.port):
        errors.append(f"PORT={settings.port}: already in use on {settings.host}; allowed: a free port "
                      "(stop the other server or pick another PORT)")
    if check_port and settings.metrics_port and port_in_use(settings.host, settings.metrics_port):
        errors.append(f"METRICS_PORT={settings.metrics_port}: already in use on {settings.host}; allowed: a free "
                      "port other than PORT, or 0 for no metrics port")
    return errors
