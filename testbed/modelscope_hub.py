"""Loopback HTTP server speaking the ModelScope hub protocol to the real `modelscope` client.

Point the client at it with ``MODELSCOPE_ENDPOINT=<hub.endpoint>``. Served routes
(what modelscope==1.40.2 / modelscope-hub==0.5.1 actually call):

- ``GET /api/v1/models/{owner}/{name}/repo/files?Revision=R&Recursive=True``  listing
- ``GET /api/v1/models/{owner}/{name}/repo?Revision=R&FilePath=P``            file (Range ok)
- ``GET /openapi/v1/models/{owner}/{name}``                                  info (get_model)
- ``GET /api/v1/models/{owner}/{name}[?Revision=R]``                         info (legacy)
- ``GET /api/v1/models/{owner}/{name}/revisions``                            revisions
- ``GET /api/v1/repos/internalAccelerationInfo``                             probe

Faults: ``LoopbackHub(..., fault=hook)`` calls ``hook(RequestInfo)`` before answering; it
returns None (serve normally), a status code, or a ``Reply`` that says how to misbehave
(error status, stall or drop the body after N bytes, corrupt a byte, extra listing
entries). ``Faults`` builds such a hook from rules per request kind and path, each
used a bounded number of times, e.g. ``Faults().on("file", "w.bin", times=3, status=503)``.

Standalone: ``python -m testbed.modelscope_hub --model owner/name=/path --port 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

CHUNK_SIZE = 1 << 20
CREATED_AT = 1_735_689_600  # fixed 2025-01-01 so revision metadata is deterministic
_ROUTE = re.compile(
    r"^/(?P<api>api|openapi)/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)"
    r"(?P<rest>/repo/files|/repo|/revisions)?/?$"
)
_KINDS = {"/repo/files": "listing", "/repo": "file", "/revisions": "revisions", None: "info"}
_PROBE_PATH = "/api/v1/repos/internalAccelerationInfo"
# (resolved path, size, mtime_ns) -> sha256; lets repeated hubs over a 500 MB model hash it once.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class RepoFile:
    """One served file: repo-relative path, source on disk, size and sha256."""

    path: str
    source: Path
    size: int
    sha256: str


@dataclass
class RequestInfo:
    """What the hub saw for one request; handed to the fault hook before answering."""

    method: str
    target: str  # path with query, exactly as sent
    kind: str  # listing | file | info | revisions | probe | unknown
    headers: dict[str, str]
    model: str | None = None
    revision: str | None = None
    file_path: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # set once answered


@dataclass(frozen=True)
class Reply:
    """How to misbehave on one request; the fields combine (a stall, then a drop)."""

    status: int | None = None  # answer this error status (with Retry-After: 0) instead
    stall: float = 0.0  # seconds to pause the body ...
    stall_after: int = 0  # ... once this many body bytes are sent (0: before the first byte)
    drop_after: int | None = None  # close the connection after this many body bytes
    corrupt: bool = False  # flip one byte in the middle of the body: same size, wrong sha256
    extra_entries: tuple[Mapping[str, object], ...] = ()  # listing entries appended as they are


# Return None to serve normally, a status code, or a Reply.
Fault = Callable[[RequestInfo], "int | Reply | None"]


@dataclass
class _Rule:
    """One rule of a Faults hook."""

    kind: str
    path: str | None
    times: int | None
    reply: Reply
    used: int = 0


class Faults:
    """A fault hook built from rules: the first rule matching a request, with uses left, answers."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def on(self, kind: str, path: str | None = None, *, times: int | None = 1, **reply: Any) -> Faults:
        """Misbehave on requests of `kind` (for file `path` only, if given), `times` times (None: always)."""
        self._rules.append(_Rule(kind, path, times, Reply(**reply)))
        return self

    def used(self, kind: str, path: str | None = None) -> int:
        """How many requests the rules for (kind, path) have answered."""
        with self._lock:
            return sum(r.used for r in self._rules if r.kind == kind and r.path == path)

    def __call__(self, info: RequestInfo) -> Reply | None:
        with self._lock:
            for rule in self._rules:
                matches = rule.kind == info.kind and rule.path in (None, info.file_path)
                if matches and (rule.times is None or rule.used < rule.times):
                    rule.used += 1
                    return rule.reply
        return None


class _Unsatisfiable(Exception):
    """The Range header lies wholly outside the file."""


def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """Hash a file in chunks, memoised on path, size and mtime."""
    key = (str(path.resolve()), size, mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(8 * CHUNK_SIZE):
                digest.update(block)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def _skipped(rel: str) -> bool:
    """Skip dot-paths (.git, client cache metadata, .incomplete temp dirs) but keep .gitattributes."""
    return any(part.startswith(".") and part != ".gitattributes" for part in rel.split("/"))


def scan_folder(folder: Path) -> dict[str, RepoFile]:
    """Describe every servable file under *folder*, keyed by repo-relative path."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    files: dict[str, RepoFile] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if _skipped(rel) or not path.is_file():
            continue
        st = path.stat()
        files[rel] = RepoFile(rel, path, st.st_size, _sha256(path, st.st_size, st.st_mtime_ns))
    return files


def _entries(files: Mapping[str, RepoFile]) -> list[dict]:
    """Build repo/files entries: a tree entry per directory plus a blob entry per file."""
    dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    trees = [{"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0, "Sha256": ""} for d in dirs]
    blobs = [
        {"Name": f.path.rsplit("/", 1)[-1], "Path": f.path, "Type": "blob", "Size": f.size, "Sha256": f.sha256}
        for f in files.values()
    ]
    return trees + blobs


def _select(entries: list[dict], root: str, recursive: bool) -> list[dict]:
    """Filter entries to those under *root* (direct children only unless recursive)."""
    prefix = f"{root}/" if root else ""
    picked = [e for e in entries if e["Path"].startswith(prefix)]
    if not recursive:
        picked = [e for e in picked if "/" not in e["Path"][len(prefix) :]]
    return picked


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single-range ``Range`` header into inclusive (start, end); None means whole file."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not match or match.groups() == ("", ""):
        return None  # absent, multi-range or malformed: RFC 9110 lets us send the whole file
    first, last = match.groups()
    if not first:
        if int(last) == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - int(last)), size - 1
    start = int(first)
    if start >= size:
        raise _Unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if end >= start else None


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its hub."""

    daemon_threads = True  # keep-alive client connections must not block shutdown

    def __init__(self, address: tuple[str, int], hub: LoopbackHub) -> None:
        self.hub = hub
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up between requests (a killed or timed-out download) is normal; others are not."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Delegates every request to the hub."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real CDN; every answer has Content-Length
    server: _Server

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        """Answer a HEAD like a GET without body."""
        self._dispatch(head=True)

    def _dispatch(self, head: bool) -> None:
        """Hand off to the hub; a client hanging up mid-body is normal (cancel, resume)."""
        try:
            self.server.hub.handle(self, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Log only when the hub is verbose; test output stays clean."""
        if self.server.hub.verbose:
            sys.stderr.write(f"hub: {self.address_string()} {format % args}\n")


class LoopbackHub:
    """Serve local folders as ModelScope models on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        models: Mapping[str, Path | str],
        revisions: Sequence[str] = ("master",),
        *,
        fault: Fault | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        verbose: bool = False,
        token: str | None = None,
    ) -> None:
        self.host = host
        self.token = token  # set: a private hub, every request must carry it (see _authorized)
        self.revisions = tuple(revisions)
        self.fault = fault
        self.verbose = verbose
        self.files = {model: scan_folder(Path(folder)) for model, folder in models.items()}
        self._entries = {model: _entries(files) for model, files in self.files.items()}
        self._port = port
        self._lock = threading.Lock()
        self._history: list[RequestInfo] = []
        self._stopping = threading.Event()
        self._unstalled = threading.Event()  # set by stop() and release_stalls(): every stall ends at once
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> LoopbackHub:
        """Bind (loopback unless told otherwise) and serve in a background thread."""
        self._stopping.clear()
        self._unstalled.clear()
        self._server = _Server((self.host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stopping.set()
        self._unstalled.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL for MODELSCOPE_ENDPOINT."""
        if self._server is None:
            raise RuntimeError("hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def file_url(self, model: str, path: str, revision: str = "master") -> str:
        """URL the client uses to download *path*."""
        return (
            f"{self.endpoint}/api/v1/models/{model}/repo"
            f"?Revision={quote(revision, safe='')}&FilePath={quote(path, safe='')}"
        )

    def release_stalls(self) -> None:
        """End every stall now and skip later ones, so a test decides when a stalled answer goes on."""
        self._unstalled.set()

    # -- request log -------------------------------------------------------
    @property
    def history(self) -> list[RequestInfo]:
        """Snapshot of every request seen, oldest first."""
        with self._lock:
            return list(self._history)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Snapshot of (method, path_with_query) for every request seen."""
        return [(info.method, info.target) for info in self.history]

    def count(self, kind: str | None = None) -> int:
        """Number of requests of *kind* (listing, file, info, revisions, probe, unknown), or all."""
        return sum(1 for info in self.history if kind is None or info.kind == kind)

    def reset(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._history.clear()

    # -- request handling --------------------------------------------------
    def handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        """Record, consult the fault hook, then route one request."""
        info = self._describe(handler)
        with self._lock:
            self._history.append(info)
        if not self._authorized(info):
            self._send_error(handler, info, 401, "a valid access token is required", head)
            return
        injected = self.fault(info) if self.fault is not None else None
        reply = Reply(status=injected) if isinstance(injected, int) else injected or Reply()
        if reply.status is not None:
            # Retry-After: 0 keeps the client's retry of an injected 429/5xx from sleeping on backoff.
            self._send_error(handler, info, reply.status, "injected fault", head, {"Retry-After": "0"})
            return
        self._route(handler, info, head, reply)

    def _authorized(self, info: RequestInfo) -> bool:
        """No token required, or the request carries it as the real client sends it: a Bearer header
        (API calls) or the ``m_session_id`` cookie (file downloads)."""
        if self.token is None:
            return True
        headers = {key.lower(): value for key, value in info.headers.items()}
        cookies = dict(part.strip().partition("=")[::2] for part in headers.get("cookie", "").split(";"))
        return headers.get("authorization") == f"Bearer {self.token}" or cookies.get("m_session_id") == self.token

    def _describe(self, handler: BaseHTTPRequestHandler) -> RequestInfo:
        """Parse the request line into a RequestInfo."""
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        info = RequestInfo(handler.command, handler.path, "unknown", dict(handler.headers.items()), query=query)
        match = _ROUTE.match(url.path)
        if url.path == _PROBE_PATH:
            info.kind = "probe"
        elif match:
            info.kind = _KINDS[match["rest"]]
            info.model = f"{match['owner']}/{match['name']}"
            info.revision = query.get("Revision")
            info.file_path = query.get("FilePath")
            if match["api"] == "openapi":
                info.kind = "info" if info.kind == "info" else "unknown"
        return info

    def _route(self, handler: BaseHTTPRequestHandler, info: RequestInfo, head: bool, reply: Reply) -> None:
        """Answer by kind; unknown models, revisions and files get a JSON 404."""
        if info.kind == "probe":
            # Empty region answer: the client then skips intra-cloud acceleration.
            self._send_json(handler, info, 200, {"Code": 200, "Data": {"InternalRegionQueryAddress": ""}}, head)
            return
        if info.kind == "unknown" or info.model not in self.files:
            self._send_error(handler, info, 404, f"not found: {info.model or info.target}", head)
            return
        # Model info and revisions are revision-agnostic unless the caller names one.
        checked = info.kind in ("listing", "file") or (info.kind == "info" and info.revision is not None)
        if checked and (info.revision or "master") not in self.revisions:
            self._send_error(handler, info, 404, f"{info.model} has no revision {info.revision or 'master'}", head)
            return
        if info.kind == "listing":
            self._answer_listing(handler, info, head, reply)
        elif info.kind == "file":
            self._answer_file(handler, info, head, reply)
        else:
            getattr(self, f"_answer_{info.kind}")(handler, info, head)

    def _answer_listing(self, handler: BaseHTTPRequestHandler, info: RequestInfo, head: bool, reply: Reply) -> None:
        """Answer repo/files, honouring Root and Recursive; a fault may append entries."""
        root = info.query.get("Root", "").strip("/")
        recursive = info.query.get("Recursive", "True").lower() != "false"
        entries = _select(self._entries[info.model or ""], root, recursive) + [dict(e) for e in reply.extra_entries]
        if root and not entries:
            # The client treats 404 on a Root-scoped listing as "no such directory".
            self._send_error(handler, info, 404, f"no directory {root}", head)
            return
        self._send_json(handler, info, 200, {"Code": 200, "Success": True, "Data": {"Files": entries}}, head)

    def _answer_info(self, handler: BaseHTTPRequestHandler, info: RequestInfo, head: bool) -> None:
        """Answer model info in the OpenAPI (snake_case) or legacy (PascalCase) envelope."""
        owner, name = (info.model or "/").split("/", 1)
        total = sum(f.size for f in self.files[info.model or ""].values())
        if info.target.startswith("/openapi/"):
            data = {
                "id": info.model,
                "display_name": name,
                "private": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "file_size": total,
                "tags": [],
                "tasks": [],
            }
            self._send_json(handler, info, 200, {"success": True, "data": data}, head)
            return
        data = {
            "Id": info.model,
            "Name": name,
            "Path": owner,
            "Owner": owner,
            "Visibility": 5,
            "Revision": info.revision or "master",
            "Downloads": 0,
            "Likes": 0,
            "Tags": [],
        }
        self._send_json(handler, info, 200, {"Code": 200, "Success": True, "Data": data}, head)

    def _answer_revisions(self, handler: BaseHTTPRequestHandler, info: RequestInfo, head: bool) -> None:
        """List every revision as a branch: tags would make release-mode clients prefer them over master."""
        branches = [{"Revision": rev, "CreatedAt": CREATED_AT} for rev in self.revisions]
        data = {"RevisionMap": {"Branches": branches, "Tags": []}}
        self._send_json(handler, info, 200, {"Code": 200, "Success": True, "Data": data}, head)

    def _answer_file(self, handler: BaseHTTPRequestHandler, info: RequestInfo, head: bool, reply: Reply) -> None:
        """Stream one file, honouring a single byte Range."""
        repo_file = self.files[info.model or ""].get(info.file_path or "")
        if repo_file is None:
            self._send_error(handler, info, 404, f"file not found: {info.file_path}", head)
            return
        try:
            span = parse_range(handler.headers.get("Range"), repo_file.size)
        except _Unsatisfiable:
            extra = {"Content-Range": f"bytes */{repo_file.size}"}
            self._send_error(handler, info, 416, "range not satisfiable", head, extra)
            return
        start, end = span or (0, repo_file.size - 1)
        # X-Linked-ETag is how the LFS CDN hands out the sha256; the client then verifies even
        # single-file downloads (model_file_download), which never see a listing.
        etag = f'"{repo_file.sha256}"'
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "X-Linked-ETag": etag,
        }
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{repo_file.size}"
        self._send_head(handler, info, 206 if span else 200, headers, end - start + 1)
        if not head:
            self._stream(handler, repo_file.source, start, end - start + 1, reply)

    # -- low-level writers -------------------------------------------------
    @staticmethod
    def _send_head(
        handler: BaseHTTPRequestHandler, info: RequestInfo, status: int, headers: Mapping[str, str], length: int
    ) -> None:
        """Write status line and headers."""
        info.status = status
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()

    def _stream(self, handler: BaseHTTPRequestHandler, source: Path, start: int, length: int, reply: Reply) -> None:
        """Copy *length* bytes from *start* in chunks, never the whole file in memory; apply *reply*'s faults."""
        flip = length // 2 if reply.corrupt else -1  # body offset of the corrupted byte
        limit = length if reply.drop_after is None else min(length, reply.drop_after)
        stall_at = reply.stall_after if reply.stall else -1
        sent = 0
        with source.open("rb") as fh:
            fh.seek(start)
            while sent < limit:
                if sent == stall_at:
                    self._unstalled.wait(reply.stall)
                    if self._stopping.is_set():
                        break  # hang up rather than serve on
                # End a block at the stall offset, so the stall lands on the exact byte.
                stop = min(limit, sent + CHUNK_SIZE, stall_at if stall_at > sent else limit)
                block = bytearray(fh.read(stop - sent))
                if not block:
                    break
                if sent <= flip < sent + len(block):
                    block[flip - sent] ^= 0xFF
                handler.wfile.write(block)
                sent += len(block)
        if sent < length:
            # A dropped connection, or the file shrank under us: the client sees a short body.
            handler.wfile.flush()
            handler.close_connection = True

    def _send_json(
        self,
        handler: BaseHTTPRequestHandler,
        info: RequestInfo,
        status: int,
        payload: object,
        head: bool,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Write a JSON response."""
        body = json.dumps(payload).encode()
        self._send_head(handler, info, status, {"Content-Type": "application/json", **(extra or {})}, len(body))
        if not head:
            handler.wfile.write(body)

    def _send_error(
        self,
        handler: BaseHTTPRequestHandler,
        info: RequestInfo,
        status: int,
        message: str,
        head: bool,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Write an error in the hub's envelope (Code/Message), which the client turns into typed errors."""
        payload = {"Code": status, "Success": False, "Message": message, "RequestId": os.urandom(8).hex()}
        self._send_json(handler, info, status, payload, head, extra)


def _parse_model(spec: str) -> tuple[str, Path]:
    """Parse ``owner/name=/path/to/folder``."""
    model, sep, folder = spec.partition("=")
    if not sep or model.count("/") != 1:
        raise argparse.ArgumentTypeError(f"expected owner/name=/path, got {spec!r}")
    return model, Path(folder)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a hub in the foreground and print its endpoint."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--model", action="append", type=_parse_model, required=True, help="owner/name=/path")
    parser.add_argument("--revision", action="append", help="served revision (repeatable; default master)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (a container's own network: 0.0.0.0)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    hub = LoopbackHub(dict(args.model), args.revision or ("master",), port=args.port, host=args.host,
                      verbose=args.verbose)
    with hub:
        print(hub.endpoint, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
            threading.Event().wait()


if __name__ == "__main__":
    main()
