"""The host side's reading of the configuration, on the standard library only: the Docker
path needs nothing installed on the host (README: Prerequisites).

A variable comes from the environment first, then the .env file, then its default, as the
entrypoint resolves its settings (entrypoint/env_file.py reads .env with python-dotenv; this
reader agrees with it on the KEY=VALUE forms .env files use: a unit test holds the two equal).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE_MAX_BYTES = 1024 * 1024
_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)")
_ESCAPES = {"\\n": "\n", "\\t": "\t", '\\"': '"', "\\\\": "\\", "\\'": "'", "\\r": "\r"}


def _unquote(raw: str) -> str:
    """A value as python-dotenv reads it: quoted (double quotes take escapes), or bare up to ` #`."""
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\" and raw[end - 2:end] != "\\\\":
            end = raw.find(quote, end + 1)
        body = raw[1:end] if end > 0 else raw[1:]
        if quote == "'":
            return body.replace("\\'", "'").replace("\\\\", "\\")
        return re.sub(r"\\[ntr\"'\\]", lambda m: _ESCAPES[m.group()], body)
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def read_env_file(path: Path | None) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (none for no file or an unreadable one: the entrypoint,
    which reads it strictly, names what is wrong with it)."""
    if path is None or not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            text = handle.read(ENV_FILE_MAX_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    values = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match and not line.lstrip().startswith("#"):
            values[match.group(1)] = _unquote(match.group(2).strip())
    return values


def lookup(name: str, environ: Mapping[str, str], env_file: Mapping[str, str], default: str = "") -> str:
    """The environment's value when it is set and not empty, else the .env file's, else `default`."""
    for source in (environ, env_file):
        value = source.get(name, "").strip()
        if value:
            return value
    return default


def checkout_env_file() -> Path | None:
    """The checkout's .env, where Compose and the entrypoint find it too."""
    path = ROOT / ".env"
    return path if path.is_file() else None
