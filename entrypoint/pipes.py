"""Standard output that survives its reader going away (`render | head`): writes after the
pipe closed are dropped, so a closed pipe never turns into a traceback or another exit code."""

from __future__ import annotations

import os
from typing import Any, TextIO


class ClosedPipeSafe:
    """Wraps a text stream; on the first BrokenPipeError its descriptor is pointed at
    /dev/null, so the interpreter's own flush at exit succeeds too."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self._gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
