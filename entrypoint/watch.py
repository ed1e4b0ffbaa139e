"""`entrypoint watch`: follow a start from the supervisor's phase records until it is ready.

A first start spends minutes in the download, vLLM's load and compilation and the smoke
check. On a terminal one line is redrawn every second (`[download] 42% 120 MB/280 MB 35 s`);
elsewhere (a log, CI) a plain line is printed when the phase changes and every
`every` seconds within it. The records come from the state folder (entrypoint/state.py);
the download's bytes are what has landed in its folder so far, counted only inside the
cache it is told about and only up to a bounded number of entries. Text from the records is
printed without control characters, so a record cannot redraw the terminal or fake a line.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from entrypoint.state import StateDir, process_alive
from entrypoint.value_grammar import inside

POLL_SECONDS = 1.0
FAILED_EXIT = 3
PLAIN_EVERY = 30.0
LABELS = {"weights": "weights", "download": "download", "compile-cache": "copying the image's compile cache",
          "vllm": "vLLM loading and compiling", "smoke": "smoke check"}


SCAN_LIMIT = 20_000  # entries a poll looks at: a model folder has tens, a mistake millions


def printable(text: str) -> str:
    """`text` without control or format characters (escape sequences, carriage returns, bidi marks)."""
    return "".join(c for c in text if unicodedata.category(c)[0] != "C")


def folder_bytes(folder: Path) -> int:
    """Bytes under `folder` so far, partial files included (the first SCAN_LIMIT entries)."""
    total = 0
    for count, path in enumerate(folder.rglob("*")):
        if count >= SCAN_LIMIT:
            break
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # a partial file renamed under us
            continue
    return total


def megabytes(size: float) -> str:
    return f"{size / 1e6:.0f} MB"


def describe(record: dict[str, Any], now: float, cache: Path | None = None) -> str:
    """`[phase] progress seconds` for one phase record; a download is measured only inside `cache`."""
    phase = printable(str(record.get("phase", "?")))[:40]
    parts = [f"[{phase}] {LABELS.get(phase, phase)}"]
    folder = record.get("folder")
    if phase == "download" and isinstance(folder, str) and cache is not None and inside(Path(folder), cache):
        done, total = folder_bytes(Path(folder)), int(record.get("total_bytes") or 0)
        if total:
            parts.append(f"{min(100, 100 * done // total)}% {megabytes(done)}/{megabytes(total)}")
        else:
            parts.append(megabytes(done))
    parts.append(f"{now - float(record.get('since', now)):.0f} s")
    return " ".join(parts)


def alive(pid: int | None) -> bool:
    """Whether the process still runs (True when unknown)."""
    return not pid or process_alive(pid)


@dataclass
class Watcher:
    """Polls the state folder and writes what it sees to `out`."""

    state: StateDir
    out: TextIO
    live: bool
    cache: Path | None = None
    every: float = PLAIN_EVERY
    clock: Callable[[], float] = time.time
    _last_phase: str | None = None
    _last_plain: float = 0.0

    def show(self, record: dict[str, Any]) -> None:
        now = self.clock()
        line, changed = describe(record, now, self.cache), record.get("phase") != self._last_phase
        if self.live:
            if changed and self._last_phase is not None:
                self.out.write("\n")
            self.out.write(f"\r\x1b[2K{line}")
        elif changed or now - self._last_plain >= self.every:
            self.out.write(line + "\n")
            self._last_plain = now
        self._last_phase = str(record.get("phase"))
        self.out.flush()

    def finish(self, message: str) -> None:
        self.out.write(("\n" if self.live and self._last_phase else "") + message + "\n")
        self.out.flush()

    def run(self, timeout: float, pid: int | None = None) -> int:
        """0 once the ready marker is there; 1 when the supervisor is gone or the timeout passes;
        FAILED_EXIT when the start failed for good (the supervisor holds, FAILED_START=hold)."""
        began = self.clock()
        while self.clock() - began < timeout:
            failed = self.state.failed()
            if failed is not None:
                self.finish(f"[failed] {failed['reason']}")
                return FAILED_EXIT
            ready = self.state.ready()
            if ready is not None:
                url = printable(str(ready.get("url", "")))[:200]
                self.finish(f"[ready] {url} after {self.clock() - began:.0f} s of watching")
                return 0
            record = self.state.phase()
            if not alive(pid or (record or {}).get("pid")):
                self.finish("the server stopped before it was ready; see its log (make logs)")
                return 1
            if record is not None:
                self.show(record)
            time.sleep(POLL_SECONDS)
        self.finish(f"not ready after {timeout:.0f} s of watching")
        return 1
