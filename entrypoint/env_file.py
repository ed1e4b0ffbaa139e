"""`--env-file`: a .env file read strictly. A file that is missing, not regular, too large
or not UTF-8, and every line that is not KEY=VALUE, is an error line naming the file (and
the line), never a traceback or a line python-dotenv only logs."""

from __future__ import annotations

import io
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import Original, parse_stream

from entrypoint.bounded_read import Unreadable, read_bounded
from entrypoint.errors import SettingsError

ENV_FILE_MAX_BYTES = 1024 * 1024  # settings fit in a few KiB; this bounds a mistaken log or image
ALLOWED = f"a regular UTF-8 file of KEY=VALUE lines, at most {ENV_FILE_MAX_BYTES // 1024} KiB"
SHOWN_BAD_LINES = 5


def first_line(original: Original) -> int:
    """The line a parsed chunk's text starts on (python-dotenv counts from the blank lines before it)."""
    blank = original.string[: len(original.string) - len(original.string.lstrip())]
    return original.line + blank.count("\n")


def read_env_file(path: Path | None) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (none for no file); variables without a value are left out."""
    if path is None:
        return {}
    where = f"--env-file {str(path)!r}"
    try:
        text = read_bounded(path, ENV_FILE_MAX_BYTES).decode("utf-8")
    except Unreadable as exc:
        raise SettingsError([f"{where}: {exc}; allowed: {ALLOWED}"]) from None
    except UnicodeDecodeError as exc:
        raise SettingsError([f"{where}: not UTF-8 (byte {exc.start}); allowed: {ALLOWED}"]) from None
    bad = [first_line(binding.original) for binding in parse_stream(io.StringIO(text)) if binding.error]
    if bad:
        raise SettingsError([f"{where}, line {line}: not KEY=VALUE; allowed: {ALLOWED}"
                             for line in bad[:SHOWN_BAD_LINES]])
    return {key: value for key, value in dotenv_values(stream=io.StringIO(text)).items() if value is not None}
