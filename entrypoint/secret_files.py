"""Secrets given as files (VAR_FILE, a Docker or Kubernetes secret): read, bounded and checked,
never quoted in an error line."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from entrypoint import scrub
from entrypoint.api_keys import KEY_FILE_ALLOWED, read_keys
from entrypoint.bounded_read import Unreadable, read_bounded
from entrypoint.settings import FIELDS, SECRET_ALLOWED, SECRET_FILE_ALLOWED, SECRET_FILES, SECRET_TEXT, Settings

SECRET_FILE_MAX_BYTES = 64 * 1024  # a key is short; this bounds a mistaken /dev/zero


def read_secret_file(name: str, path: Path) -> tuple[str | None, str | None]:
    """The secret a VAR_FILE holds, or the error line (naming the variable and path, never the content)."""
    where = f"{name}={str(path)!r}"
    try:
        data = read_bounded(path, SECRET_FILE_MAX_BYTES)
    except Unreadable as exc:
        return None, f"{where}: {exc}; allowed: {SECRET_FILE_ALLOWED}"
    # `echo key > file` and Kubernetes' stringData leave one trailing newline; the key is what precedes it.
    text = data.decode("ascii", errors="replace").removesuffix("\n").removesuffix("\r")
    if not text:
        return None, f"{where}: the file is empty; allowed: {SECRET_FILE_ALLOWED}"
    if not SECRET_TEXT.fullmatch(text):
        return None, f"{where}: the file's content has spaces, control or non-ASCII characters; allowed: " \
                     f"{SECRET_ALLOWED}"
    return text, None


def read_api_key_file(path: Path) -> tuple[list[str], str | None]:
    """API_KEY_FILE's keys, or the error line (naming the variable, path and line, never a key)."""
    try:
        return read_keys(path), None
    except Unreadable as exc:
        return [], f"API_KEY_FILE={str(path)!r}: {exc}; allowed: {KEY_FILE_ALLOWED}"


def fill_secrets(settings: Settings, sources: dict[str, str]) -> tuple[Settings, list[str]]:
    """Fill each secret from its VAR_FILE; both VAR and VAR_FILE set is an error."""
    updates: dict[str, SecretStr] = {}
    errors = []
    for file_name, name in SECRET_FILES.items():
        path = getattr(settings, FIELDS[file_name])
        if path is None:
            continue
        if getattr(settings, FIELDS[name]) is not None:
            errors.append(f"{file_name}={str(path)!r}: {name} is set too; allowed: one of them ({name} holds the "
                          f"value, {file_name} a file holding it)")
            continue
        if file_name == "API_KEY_FILE":  # several keys: clients of the bundle's own send the first
            keys, error = read_api_key_file(path)
            scrub.remember(*keys)
            value = keys[0] if keys else None
        else:
            value, error = read_secret_file(file_name, path)
        if error:
            errors.append(error)
        else:
            scrub.remember(str(value))
            updates[FIELDS[name]] = SecretStr(str(value))
            sources[name] = f"file {file_name}"
    return settings.model_copy(update=updates), errors
