"""One grammar per kind of value: names that become paths or flags, numbers, URLs.

Each check returns the value or raises ValueError with the reason (pydantic turns it into
the setting's one error line). Patterns use `fullmatch`: `$` would let a trailing newline
through.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# A hub name part: starts with a letter or digit (so never `-`, `.` or `..`), at most 96
# characters (the hub's own limit), which keeps every path component well under 255.
SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
MODEL_ID = re.compile(rf"{SEGMENT}/{SEGMENT}")
# Git refs may hold `/` (release/v1); no component starts with `.` or `-`, none is `..`.
REVISION_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,95}"
REVISION = re.compile(rf"{REVISION_PART}(/{REVISION_PART}){{0,3}}")
REVISION_MAX = 128
SERVED_PART = r"[A-Za-z0-9_][A-Za-z0-9._:+-]{0,127}"
SERVED_NAME = re.compile(rf"{SERVED_PART}(/{SERVED_PART})?")
SERVED_NAME_MAX = 128
# A DNS name (RFC 1123 labels), as LeaderWorkerSet gives the leader's: pod.subdomain.namespace.
HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"{HOST_LABEL}(\.{HOST_LABEL})*\.?")
HOST_NAME_MAX = 253
INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # fits 64 bits; no `2_0`, no `1e3`
DECIMAL = re.compile(r"[+-]?([0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15})")  # no `inf`, `nan`, `1e10`


def model_id(value: str) -> str:
    if not MODEL_ID.fullmatch(value):
        raise ValueError("expected owner/name: letters, digits, `.`, `_` or `-`, each part starting with a "
                         "letter or digit, at most 96 characters")
    return value


def revision(value: str) -> str:
    if len(value) > REVISION_MAX or ".." in value or not REVISION.fullmatch(value):
        raise ValueError(f"expected a branch, tag or commit name: letters, digits, `.`, `_`, `-` and `/`, no part "
                         f"starting with `.` or `-`, no `..`, at most {REVISION_MAX} characters")
    return value


def served_name(value: str) -> str:
    if len(value) > SERVED_NAME_MAX or not SERVED_NAME.fullmatch(value):
        raise ValueError(f"expected a name of letters, digits, `.`, `_`, `:`, `+` or `-` (one `/` allowed), "
                         f"starting with a letter, digit or `_`, at most {SERVED_NAME_MAX} characters")
    return value


def host_name(value: str) -> str:
    """A DNS name or an IP address: what vLLM's --master-addr and an HTTP client can reach."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if len(value) > HOST_NAME_MAX or not HOST_NAME.fullmatch(value):
            raise ValueError(f"expected a host name (letters, digits and `-` in dot-separated labels, at most "
                             f"{HOST_NAME_MAX} characters) or an IP address") from None
    return value


def number_text(value: str, integer: bool) -> str:
    """A number as people write it: digits, an optional sign and (for decimals) one point."""
    text = value.strip()
    if not (INTEGER if integer else DECIMAL).fullmatch(text):
        raise ValueError("expected an integer" if integer else "expected a plain decimal number (no exponent, "
                         "inf or nan)")
    return text


def plain_int(text: str) -> int | None:
    """The integer the settings' grammar reads in `text` (INTEGER: its length bound comes before any
    conversion), else None. Everything that reads a number the user wrote goes through here or
    `number_text`, so `+5000` is 5000 everywhere and 5,000 digits are refused, never converted."""
    stripped = text.strip()
    return int(stripped) if INTEGER.fullmatch(stripped) else None


def http_url(value: str) -> str:
    """An http(s) URL with a host and a valid port; trailing slashes dropped."""
    if not value:
        return value
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("contains white space or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # an unclosed [ or a port out of range
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("has no host")
    if port == 0:
        raise ValueError("port out of range 1-65535")
    if parts.query or parts.fragment:
        raise ValueError("has a query or fragment")
    return value.rstrip("/")


def inside(path: Path, root: Path) -> bool:
    """Whether `path` stays inside `root` once both are resolved (`..` and symbolic links followed)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return False


def env_text(value: Any) -> str:
    """A value as an env file writes it: empty for unset, lower-case booleans."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
