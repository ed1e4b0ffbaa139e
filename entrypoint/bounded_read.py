"""Reading a file a user named without ever blocking or running out of memory: regular
files only (a FIFO, a device such as /dev/zero or a folder is refused before it is
opened), opened non-blocking, at most a given number of bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Unreadable(Exception):
    """Why a named file cannot be used, as a phrase for an error line."""


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The content of a regular file of at most `max_bytes`; Unreadable otherwise."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise Unreadable("not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unreadable(f"cannot read it ({exc.strerror or exc})") from None
    except ValueError:  # a NUL byte in the path
        raise Unreadable("cannot read it (a NUL byte in the path)") from None
    try:
        # Swapped for something else between stat and open: check what was opened.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        data = os.read(fd, max_bytes + 1)
    except OSError as exc:
        raise Unreadable(f"cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise Unreadable(f"larger than {max_bytes} bytes")
    return data
