"""Reading a file without ever blocking or running out of memory: regular files only (a FIFO,
a device such as /dev/zero or a folder is refused before it is opened), opened non-blocking,
at most a given number of bytes. Standard library only: the probes read their state with it."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Unreadable(Exception):
    """Why a named file cannot be used, as a phrase for an error line."""


class CannotRead(Unreadable):
    """The OS refused: `reason` is its words (strerror)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot read it ({reason})")
        self.reason = reason


class Missing(CannotRead):
    """Nothing at the path."""


class NotRegular(Unreadable):
    """Something other than a regular file: `kind` says what, e.g. "a FIFO"."""

    def __init__(self, mode: int) -> None:
        super().__init__("not a regular file")
        self.kind = file_kind(mode)


class TooLarge(Unreadable):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"larger than {max_bytes} bytes")


def file_kind(mode: int) -> str:
    kinds = {stat.S_ISLNK: "a symbolic link", stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO",
             stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((text for test, text in kinds.items() if test(mode)), "not a regular file")


def _refused(exc: OSError) -> CannotRead:
    return (Missing if isinstance(exc, FileNotFoundError) else CannotRead)(exc.strerror or str(exc))


def read_bounded(path: Path, max_bytes: int, follow_symlinks: bool = True) -> bytes:
    """The content of a regular file of at most `max_bytes`; Unreadable otherwise. Without
    `follow_symlinks`, a symbolic link is refused as not a regular file."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        mode = (os.stat if follow_symlinks else os.lstat)(path).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(mode)
        fd = os.open(path, flags)
    except OSError as exc:
        raise _refused(exc) from None
    except ValueError:  # a NUL byte in the path
        raise CannotRead("a NUL byte in the path") from None
    try:
        # Swapped for something else between stat and open: check what was opened.
        opened = os.fstat(fd).st_mode
        if not stat.S_ISREG(opened):
            raise NotRegular(opened)
        chunks, size = [], 0
        while size <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _refused(exc) from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise TooLarge(max_bytes)
    return b"".join(chunks)
