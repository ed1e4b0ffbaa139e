"""Errors that are the user's to fix: they carry the text to show, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from entrypoint.scrub import scrub


class UserError(Exception):
    """A failure explained in one line; `exit_code` is what the process exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(UserError):
    """One or more settings are wrong; each line names the variable, the value and what is allowed."""

    exit_code = 2

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


ERROR_PREFIX = "error: "  # every command's user-facing failure lines start with this


def run_cli(body: Callable[[], int]) -> int:
    """A command's exit status: body()'s, or a UserError's lines on stderr (each after ERROR_PREFIX)
    and its exit code, or 130 after Ctrl-C. Never a traceback for what the user can fix, never a secret."""
    try:
        return body()
    except UserError as exc:
        for line in exc.message.splitlines():
            print(f"{ERROR_PREFIX}{scrub(line)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the line the ^C was echoed on
        return 130
