"""Errors that are the user's to fix: they carry the text to show, never a traceback."""

from __future__ import annotations


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
