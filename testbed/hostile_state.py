"""Hostile state folders for the probes, by kind, and a runner that measures what a probe
process did with one: exit code, output lines, wall time and peak memory.

Each case starts from a folder holding valid records (pointing at a healthy loopback
/health) and breaks one file, or the folder itself. The unit tests and
bench/reliability.py run the same table.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from entrypoint.state import CANARY_FILE, MAX_RECORD_BYTES, READY_FILE, SCHEMAS, STATE_FILE
from testbed.paths import ROOT

FOLDER = ""  # a case's target when it breaks the folder itself
READERS = {READY_FILE: ("startup", "ready"), STATE_FILE: ("live",), CANARY_FILE: ("live",),
           FOLDER: ("startup", "ready", "live")}
FAILS, PASSES, EITHER = frozenset({1}), frozenset({0}), frozenset({0, 1})
PROBE_TIMEOUT = 10.0  # generous: a loaded CI machine can take seconds to start an interpreter
# Only a hang trips this: the probe's own bound is its --timeout.
HANG_GUARD_SECONDS = 30.0


class StateCase(NamedTuple):
    """`make(path, record)` replaces the valid `target` file at `path` (for FOLDER: the folder)
    with something hostile and returns the --state-dir to probe."""

    kind: str
    name: str
    target: str
    make: Callable[[Path, dict[str, Any]], Path]
    exits: frozenset[int] = FAILS

    @property
    def id(self) -> str:
        return f"{self.target or 'folder'}:{self.name}"


def valid_records(url: str) -> dict[str, dict[str, Any]]:
    """What the supervisor writes for a healthy server at `url`."""
    now, clock = time.time(), time.monotonic()
    return {STATE_FILE: {"url": url, "served_model_name": "m", "supervisor_pid": 1, "server_pid": 2,
                         "model_path": "/models/m", "fallback": False, "server_started_at": now},
            READY_FILE: {"url": url, "served_model_name": "m", "server_answered_at": now, "at": now},
            CANARY_FILE: {"ok": True, "reason": "ready", "seconds": None, "error": None, "at": now,
                          "monotonic": clock, "consecutive_failures": 0, "failures_limit": 3, "interval": 5.0,
                          "stale_after": 600.0}}


def _replace(path: Path) -> Path:
    path.unlink(missing_ok=True)
    return path


def raw(data: bytes | Callable[[dict[str, Any]], bytes]) -> Callable[[Path, dict[str, Any]], Path]:
    """A maker writing these bytes (or the bytes made from the valid record) as the file."""
    def make(path: Path, record: dict[str, Any]) -> Path:
        _replace(path).write_bytes(data(record) if callable(data) else data)
        return path.parent
    return make


def edited(**changes: Any) -> Callable[[Path, dict[str, Any]], Path]:
    """The valid record with keys changed (a value of MISSING drops the key)."""
    return raw(lambda record: json.dumps({k: v for k, v in {**record, **changes}.items() if v is not MISSING},
                                         allow_nan=True).encode())


MISSING = object()


def thing(create: Callable[[Path], None]) -> Callable[[Path, dict[str, Any]], Path]:
    """A maker putting a non-file (link, FIFO, device...) where the file should be."""
    def make(path: Path, record: dict[str, Any]) -> Path:
        create(_replace(path))
        return path.parent
    return make


def folder(create: Callable[[Path], Path]) -> Callable[[Path, dict[str, Any]], Path]:
    """A maker breaking the state folder; `create(folder)` returns the --state-dir to pass."""
    return lambda path, record: create(path)


def _socket_file(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _sparse(size: int) -> Callable[[Path], None]:
    def create(path: Path) -> None:
        with path.open("wb") as out:
            out.truncate(size)
    return create


def _padded(size: int) -> Callable[[dict[str, Any]], bytes]:
    """The valid record followed by whitespace up to `size` bytes (still valid JSON)."""
    return lambda record: json.dumps(record).encode().ljust(size)


def _wrong_values(field_check: Callable[[Any], bool]) -> list[Any]:
    return [v for v in ([], {}, None, True, 1, -1, 0, "1", 1.5, 1e308) if not field_check(v)]


def type_cases(target: str) -> list[StateCase]:
    """Every key of the file's schema missing (when required) and holding each wrong type."""
    cases = []
    for key, field in SCHEMAS[target].items():
        if field.required:
            cases.append(StateCase("wrong keys or types", f"no {key}", target, edited(**{key: MISSING})))
        cases += [StateCase("wrong keys or types", f"{key}={json.dumps(value)}", target, edited(**{key: value}))
                  for value in _wrong_values(field.check)]
    return cases


def content_cases(target: str) -> list[StateCase]:
    """Hostile content for one state file."""
    shape = [("a JSON list", b"[]"), ("a list of the record", lambda r: json.dumps([r]).encode()),
             ("{}", b"{}"), ("a string", b'"ready"'), ("a number", b"42"), ("null", b"null"), ("true", b"true"),
             ("empty", b""), ("whitespace", b"  \n\t"), ("truncated", lambda r: json.dumps(r).encode()[:-7]),
             ("NaN", b'{"url": NaN}'), ("deep nesting", b"[" * 60000),
             ("a 5000-digit number", b'{"a": ' + b"1" * 5000 + b"}")]
    text = [("not UTF-8", b'{"url": "\xff\xfe"}'), ("UTF-16", lambda r: json.dumps(r).encode("utf-16")),
            ("NUL bytes", lambda r: json.dumps(r).encode() + b"\0\0")]
    cases = [StateCase("JSON of the wrong shape", name, target, raw(data)) for name, data in shape]
    cases += [StateCase("encodings", name, target, raw(data)) for name, data in text]
    cases += [StateCase("sizes", "a sparse 1 GiB file", target, thing(_sparse(1 << 30))),
              StateCase("sizes", "one byte over the cap", target, raw(_padded(MAX_RECORD_BYTES + 1))),
              StateCase("sizes", "at the cap, valid", target, raw(_padded(MAX_RECORD_BYTES)), PASSES)]
    devices = [("a symlink to /dev/zero", lambda p: p.symlink_to("/dev/zero")),
               ("a symlink to /dev/urandom", lambda p: p.symlink_to("/dev/urandom")),
               ("a dangling symlink", lambda p: p.symlink_to(p.with_name("nowhere"))),
               ("a symlink loop", lambda p: p.symlink_to(p)),
               ("a FIFO", lambda p: os.mkfifo(p)),
               ("a directory", lambda p: p.mkdir()),
               ("a unix socket", _socket_file),
               ("a character device like /dev/zero", lambda p: os.mknod(p, 0o600 | 0o020000, os.makedev(1, 5)))]
    cases += [StateCase("not a regular file", name, target, thing(create)) for name, create in devices]
    cases.append(StateCase("not a regular file", "a symlink to a valid record", target, _link_to_valid))
    return cases + type_cases(target)


def _link_to_valid(path: Path, record: dict[str, Any]) -> Path:
    """Refused too: the supervisor renames regular files into place, never links."""
    elsewhere = path.with_name(f"elsewhere-{path.name}")
    elsewhere.write_text(json.dumps(record))
    _replace(path).symlink_to(elsewhere)
    return path.parent


def url_cases(target: str) -> list[StateCase]:
    """URLs the probe must not connect to, parse into a traceback or look up in DNS."""
    urls = ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:0", "http://127.0.0.1", "https://127.0.0.1:1",
            "ftp://127.0.0.1:21", "http://example.invalid:80", "http://user:pw@127.0.0.1:1", "http://127.0.0.1:1/x?y",
            "", "127.0.0.1:8000", "http://127.0.0.1:1\nX", "http://" + "a" * 10000 + ":1", "http://[fe80::1%eth0:1"]
    return [StateCase("unusable URLs", repr(url)[:40], target, edited(url=url)) for url in urls]


def odd_but_valid_cases() -> list[StateCase]:
    """Records the schema allows whose text would break a naive line: still exactly one line."""
    names = {"newlines": "a\nb\r\nc", "line separators": "a\u2028b\x85c\x0bd", "ANSI escapes": "\x1b[2J\x1b[31mred",
             "a lone surrogate": "\ud800", "10000 characters": "m" * 10000}
    cases = [StateCase("odd but valid text", f"served name with {what}", READY_FILE, edited(served_model_name=name),
                       PASSES) for what, name in names.items()]
    cases += [StateCase("odd but valid text", "canary error of 10000 lines", CANARY_FILE,
                        edited(ok=False, error="x\n" * 10000, consecutive_failures=5), FAILS),
              StateCase("odd but valid text", "canary from the future", CANARY_FILE,
                        edited(monotonic=1e308), FAILS),
              StateCase("odd but valid text", "canary stale after 1e308 s", CANARY_FILE,
                        edited(stale_after=1e308), PASSES)]
    return cases


def _unreadable(path: Path) -> Path:
    path.chmod(0)  # root reads it anyway: then the probes judge the valid records
    return path


def folder_cases() -> list[StateCase]:
    """The --state-dir itself is missing, not a folder, unreachable or unreadable."""
    def swap(create: Callable[[Path], None]) -> Callable[[Path], Path]:
        def make(path: Path) -> Path:
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
            create(path)
            return path
        return make

    breakers = [("missing", lambda p: p / "gone"), ("a regular file", swap(lambda p: p.write_text("{}"))),
                ("a FIFO", swap(os.mkfifo)), ("a symlink loop", swap(lambda p: p.symlink_to(p))),
                ("under /dev/null", lambda p: Path("/dev/null/state")),
                ("a path over PATH_MAX", lambda p: p.joinpath(*["x" * 255] * 20)),
                ("a symlink to /dev", swap(lambda p: p.symlink_to("/dev"))),
                ("/proc/self", lambda p: Path("/proc/self"))]
    cases = [StateCase("unusable folders", name, FOLDER, folder(create)) for name, create in breakers]
    return [*cases, StateCase("unusable folders", "mode 000", FOLDER, folder(_unreadable), EITHER)]


def state_cases() -> dict[str, list[StateCase]]:
    """Every case, grouped by kind."""
    cases = [case for target in (READY_FILE, STATE_FILE, CANARY_FILE) for case in content_cases(target)]
    cases += [case for target in (READY_FILE, STATE_FILE) for case in url_cases(target)]
    cases += odd_but_valid_cases() + folder_cases()
    kinds: dict[str, list[StateCase]] = {}
    for case in cases:
        kinds.setdefault(case.kind, []).append(case)
    return kinds


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def healthy_server() -> Iterator[str]:
    """A loopback /health answering 200: the probes' verdict then depends on the state only."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _drip(listener: socket.socket, stop: threading.Event) -> None:
    """Answer every connection with an endless header, one byte at a time: each read
    succeeds, so no socket timeout ever fires."""
    def feed(conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX: ")
                while not stop.wait(0.1):
                    conn.sendall(b"x")
            except OSError:
                pass

    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=feed, args=(conn,), daemon=True).start()


@contextmanager
def hung_servers() -> Iterator[dict[str, str]]:
    """Loopback servers that never give the probe an answer: one accepts and stays silent,
    one drips an endless header."""
    stop = threading.Event()
    with socket.socket() as silent, socket.socket() as drip:
        for sock in (silent, drip):
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
        threading.Thread(target=_drip, args=(drip, stop), daemon=True).start()
        try:
            yield {"a silent /health": f"http://127.0.0.1:{silent.getsockname()[1]}",
                   "a /health dripping an endless header": f"http://127.0.0.1:{drip.getsockname()[1]}"}
        finally:
            stop.set()


def hung_cases(urls: dict[str, str]) -> list[StateCase]:
    """Valid records pointing at a server that never answers: the probe's own bound ends them
    (startup, which asks no server, passes)."""
    return [StateCase("servers that never answer", name, target, edited(url=url), exits)
            for name, url in urls.items() for target, exits in ((READY_FILE, EITHER), (STATE_FILE, FAILS))]


def build(case: StateCase, root: Path, url: str) -> Path:
    """A state folder under `root` holding valid records with the case's break; the --state-dir."""
    state = root / "state"
    state.mkdir(parents=True)
    records = valid_records(url)
    for name, record in records.items():
        (state / name).write_text(json.dumps(record))
    return case.make(state / case.target if case.target else state, records.get(case.target, {}))


class Run(NamedTuple):
    """What one probe process did."""

    code: int | None  # None: killed by the hang guard
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_kb: int

    @property
    def lines(self) -> list[str]:
        return (self.stdout + self.stderr).splitlines()


# Forks the command from a small interpreter and reports its exit, wall time and peak RSS:
# a child forked (or vforked) from the big test process would inherit that process's RSS
# as its own peak.
_LAUNCHER = """
import os, sys, time
started = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {wall} {usage.ru_maxrss}")
"""


def run_command(argv: list[str], cwd: Path = ROOT, guard: float = HANG_GUARD_SECONDS) -> Run:
    """Run a command to its end (killed after `guard` s, which only a hang reaches), with its
    own wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="run-") as tmp:
        report, out, err = (Path(tmp) / name for name in ("report", "out", "err"))
        with out.open("wb") as stdout, err.open("wb") as stderr:
            launcher = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv], cwd=cwd,
                                        stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                        start_new_session=True)
            try:
                launcher.wait(timeout=guard)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, 9)
                launcher.wait()
        text = report.read_text().split() if report.exists() else []
        code, wall, rss = (int(text[0]), float(text[1]), int(text[2])) if len(text) == 3 else (None, guard, 0)
        return Run(code, out.read_text(errors="replace"), err.read_text(errors="replace"), wall, rss)


def probe_argv(probe: str, state_dir: Path, timeout: float = PROBE_TIMEOUT) -> list[str]:
    return [sys.executable, "-m", "healthcheck", probe, "--state-dir", str(state_dir), "--timeout", str(timeout)]


def handled(case: StateCase, run: Run) -> bool:
    """The probe guarantee: an allowed exit, exactly one line, no traceback."""
    return run.code in case.exits and len(run.lines) == 1 and "Traceback" not in run.stderr
