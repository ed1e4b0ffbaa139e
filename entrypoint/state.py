"""Files the supervisor leaves for the probes: where the server is, whether it is ready,
and what the engine canary saw last.

Each node has a role (`role` in state.json and the ready marker; absent means server):

- server: vLLM on this node alone. ready marker = vLLM answered and the smoke check passed;
  `ready` = the marker and /health 200; `live` = /health 200 and the canary not failing.
- leader: node 0 of a LeaderWorkerSet group, serving the API. The same as a server: vLLM
  answers only once every node of the group has joined, so its marker means the group formed.
- worker: another node of the group, running vLLM headless (no API, no smoke, no canary).
  ready marker = its vLLM runs and its leader serves (so it joined); `ready` = the marker and
  its vLLM process alive; `live` = its vLLM process alive. Generation through the group is
  the leader's canary's to judge: a hung worker hangs the leader's engine, the leader's
  `live` fails, and LeaderWorkerSet recreates the group.

This is the one contract between the supervisor and the probes: each file's schema is
checked when it is written and again when it is read, so a probe never judges a record
the supervisor could not have written. Reading is bounded whatever the folder holds: only
regular files (never a symlink, FIFO or device) of at most MAX_RECORD_BYTES are read.

Kept to the standard library: the healthcheck imports it every few seconds.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args
from urllib.parse import urlsplit

from entrypoint.bounded_read import CannotRead, Missing, NotRegular, TooLarge, read_bounded

DEFAULT_STATE_DIR = Path("/tmp/ascend-serve")
STATE_FILE = "state.json"
READY_FILE = "ready"
CANARY_FILE = "canary.json"
# The supervisor's records are a few hundred bytes; anything near this is not one of them.
MAX_RECORD_BYTES = 64 * 1024
_SHOWN_VALUE_CHARS = 60
PHASE_FILE = "phase.json"
# A start that failed for a reason a restart cannot mend, held instead of restarted (FAILED_START).
FAILED_FILE = "failed.json"
NodeRole = Literal["server", "leader", "worker"]
NODE_ROLES: tuple[str, ...] = get_args(NodeRole)


class StateProblem(Exception):
    """A state file is there but cannot be used; the message is one line naming the file."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_literal_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return True


def _is_local_url(value: Any) -> bool:
    """http://ADDRESS:PORT with a literal address: no name lookup, which no socket timeout bounds."""
    if not isinstance(value, str) or not value.isprintable() or len(value) > 200:
        return False
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme == "http" and _is_literal_host(parts.hostname or "") and port is not None
            and 1 <= port <= 65535 and parts.username is None and parts.path in ("", "/")
            and not parts.query and not parts.fragment)


class Field(NamedTuple):
    """One key of a record: whether it must be there and what its value must be."""

    check: Callable[[Any], bool]
    expected: str
    required: bool = True

    def optional(self) -> Field:
        return Field(self.check, self.expected, required=False)

    def or_null(self) -> Field:
        return Field(lambda v: v is None or self.check(v), f"{self.expected} or null", self.required)


TEXT = Field(lambda v: isinstance(v, str), "a string")
FLAG = Field(lambda v: isinstance(v, bool), "true or false")
NUMBER = Field(_is_number, "a finite number")
POSITIVE = Field(lambda v: _is_number(v) and v > 0, "a finite number > 0")
COUNT = Field(_is_count, "an integer >= 0")
LIMIT = Field(lambda v: _is_count(v) and v >= 1, "an integer >= 1")
PID = Field(lambda v: _is_count(v) and v >= 1, "a process id")
ROLE = Field(lambda v: v in NODE_ROLES, " or ".join(NODE_ROLES))
URL = Field(_is_local_url, "http://ADDRESS:PORT with a literal IP address (or localhost) and a port 1-65535")

# Required keys are the ones the supervisor always writes; unknown keys are allowed, so a
# newer supervisor may add some without failing an older probe.
SCHEMAS: dict[str, dict[str, Field]] = {
    STATE_FILE: {"url": URL, "served_model_name": TEXT, "supervisor_pid": PID, "server_pid": PID,
                 "model_path": TEXT.optional(), "fallback": FLAG.optional(),
                 "server_started_at": NUMBER.optional(), "role": ROLE.optional()},
    READY_FILE: {"url": URL, "served_model_name": TEXT, "server_answered_at": NUMBER.optional(),
                 "at": NUMBER.optional(), "role": ROLE.optional(), "server_pid": PID.optional(),
                 "leader": TEXT.optional()},
    CANARY_FILE: {"ok": FLAG, "reason": TEXT, "monotonic": NUMBER, "consecutive_failures": COUNT,
                  "failures_limit": LIMIT, "stale_after": POSITIVE, "seconds": NUMBER.or_null().optional(),
                  "error": TEXT.or_null().optional(), "at": NUMBER.optional(), "interval": NUMBER.optional()},
    PHASE_FILE: {"phase": TEXT, "since": NUMBER, "pid": PID, "folder": TEXT.optional(),
                 "total_bytes": COUNT.or_null().optional(), "server_pid": PID.optional()},
    FAILED_FILE: {"reason": TEXT, "exit_code": COUNT, "at": NUMBER},
}
ROLES = {STATE_FILE: "supervisor state", READY_FILE: "ready marker", CANARY_FILE: "canary record",
         PHASE_FILE: "start phase record", FAILED_FILE: "failed start record"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "..."


def schema_problem(name: str, record: Any) -> str | None:
    """What keeps `record` from being a valid `name` file, or None when it is one."""
    if not isinstance(record, dict):
        return f"holds {type(record).__name__} JSON, not an object"
    for key, field in SCHEMAS[name].items():
        if key not in record:
            if field.required:
                return f"has no {key!r}"
        elif not field.check(record[key]):
            return f"{key!r} is {_shown(record[key])}; expected {field.expected}"
    return None


def _read_bounded(path: Path, where: str) -> bytes | None:
    """The bytes of a regular file of at most MAX_RECORD_BYTES; None when there is no file.
    A symbolic link is refused like a FIFO or a device: the supervisor writes none."""
    try:
        return read_bounded(path, MAX_RECORD_BYTES, follow_symlinks=False)
    except Missing:
        return None
    except NotRegular as exc:
        raise StateProblem(f"{where} is {exc.kind}; the supervisor writes a regular file") from None
    except TooLarge:
        raise StateProblem(f"{where} is over {MAX_RECORD_BYTES} bytes; the supervisor's records are small") from None
    except CannotRead as exc:
        raise StateProblem(f"{where}: cannot read it: {exc.reason}") from None


def read_record(path: Path, name: str) -> dict[str, Any] | None:
    """The record `name` at `path`, checked against its schema; None when there is none.

    Raises StateProblem when the file is there but is not a record the supervisor writes."""
    where = f"{ROLES[name]} {path}"
    data = _read_bounded(path, where)
    if data is None:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise StateProblem(f"{where} is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise StateProblem(f"{where} is not valid JSON") from None
    problem = schema_problem(name, record)
    if problem is not None:
        raise StateProblem(f"{where} {problem}")
    return record


def role_of(record: dict[str, Any]) -> str:
    """A record's node role; records without one come from a server."""
    return str(record.get("role", "server"))


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not): /proc/PID/stat's state, else a signal 0."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            fields = stat_file.read(4096).rsplit(b")", 1)[-1].split()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return bool(fields) and fields[0] not in (b"Z", b"X")


def _scrubbed(value: Any) -> Any:
    """`value` with every text in it scrubbed: the probes print these records' messages."""
    from entrypoint.scrub import scrub  # only writers scrub; the probes import nothing but this module

    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    return value


def _write_atomic(path: Path, name: str, data: dict[str, Any]) -> None:
    problem = schema_problem(name, data)
    if problem is not None:  # a bug in the writer: the probes would refuse this record
        raise ValueError(f"{ROLES[name]} {problem}")
    text = json.dumps(_scrubbed(data), allow_nan=False)
    if len(text.encode()) > MAX_RECORD_BYTES:
        raise ValueError(f"{ROLES[name]} is over {MAX_RECORD_BYTES} bytes")
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


class StateDir:
    """The supervisor's state folder: `phase.json` and `state.json` from start, `ready` once
    smoke passed, `canary.json` while the canary runs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def reset(self) -> None:
        """Forget an earlier run: a stale ready marker must not make a new start look ready."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name in (READY_FILE, STATE_FILE, CANARY_FILE, PHASE_FILE, FAILED_FILE):
            (self.root / name).unlink(missing_ok=True)

    def write_state(self, **data: Any) -> None:
        """Record where the server listens and who runs it."""
        _write_atomic(self.root / STATE_FILE, STATE_FILE, data)

    def mark_ready(self, **data: Any) -> None:
        """Say the server answered the smoke check."""
        _write_atomic(self.root / READY_FILE, READY_FILE, data)

    def write_canary(self, **data: Any) -> None:
        """Record the canary's last look (never a secret: the healthcheck prints from it)."""
        _write_atomic(self.root / CANARY_FILE, CANARY_FILE, data)

    def read(self, name: str) -> dict[str, Any] | None:
        """One record, None when absent; StateProblem when it is there but unusable (the probes
        say why)."""
        return read_record(self.root / name, name)

    def _read_or_none(self, name: str) -> dict[str, Any] | None:
        try:
            return self.read(name)
        except StateProblem:
            return None

    def write_phase(self, phase: str, **data: Any) -> None:
        """Record the phase the start is in and since when (`entrypoint watch` shows it)."""
        _write_atomic(self.root / PHASE_FILE, PHASE_FILE,
                      {"phase": phase, "since": time.time(), "pid": os.getpid(), **data})

    def phase(self) -> dict[str, Any] | None:
        """The start's current phase record, or None before the supervisor wrote one."""
        return self._read_or_none(PHASE_FILE)

    def state(self) -> dict[str, Any] | None:
        """The state file, or None before the supervisor wrote it (or when it is unusable)."""
        return self._read_or_none(STATE_FILE)

    def ready(self) -> dict[str, Any] | None:
        """The ready marker, or None when not ready (or when it is unusable)."""
        return self._read_or_none(READY_FILE)

    def mark_failed(self, reason: str, exit_code: int) -> None:
        """Say the start failed for good: the probes report `reason` until the next start."""
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"reason": reason, "exit_code": exit_code, "at": time.time()}
        _write_atomic(self.root / FAILED_FILE, FAILED_FILE, record)

    def failed(self) -> dict[str, Any] | None:
        """The failed start's record, or None."""
        return self._read_or_none(FAILED_FILE)

    def canary(self) -> dict[str, Any] | None:
        """The canary's last record, or None when it has not run (disabled, or not ready yet)."""
        return self._read_or_none(CANARY_FILE)
