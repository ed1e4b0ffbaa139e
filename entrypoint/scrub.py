"""The one scrubber every line the bundle prints or writes passes through.

It removes, in this order:
1. every secret value the process has been told about (`remember`): the API keys, the hub
   token, the credentials of a configured endpoint, wherever they appear, including in a
   hub's error body that echoes request headers;
2. the credentials of any URL: userinfo in any form, and token-like query parameters;
3. the value of an `Authorization`, `Cookie` or API-key header written out as text.

This module imports nothing of the bundle's, so the probes, the CLI wrapper and the
supervisor can all use it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
# Shorter values are not treated as secrets to find in text: masking every "a" or "10" in a
# line would hide the line, and no key worth the name is that short (settings refuse them).
MIN_SECRET_LENGTH = 4

_known: set[str] = set()

# Userinfo with a space cannot be told from prose here; a configured URL's is remembered whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]+@")
_TOKEN_QUERY = re.compile(
    r"(?P<name>[?&;](?:[\w.-]*(?:token|key|secret|password|passwd|pwd|signature|sig|credential|auth)[\w.-]*))="
    r"(?P<value>[^&#\s]*)", re.IGNORECASE)
_HEADER = re.compile(r"(?P<name>\b(?:authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key)"
                     r"[\"']?\s*[:=]\s*[\"']?)(?P<value>(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+)", re.IGNORECASE)


def remember(*values: str | None) -> None:
    """Treat each value as a secret from now on: `scrub` replaces it wherever it appears."""
    for value in values:
        if value and len(value) >= MIN_SECRET_LENGTH:
            _known.add(value)


def remember_url_credentials(url: str | None) -> None:
    """Remember the userinfo of a URL (and its password alone) as secrets."""
    if not url or "@" not in url:
        return
    scheme, sep, rest = url.partition("://")
    userinfo = (rest if sep else scheme).rsplit("@", 1)[0]
    remember(userinfo, userinfo.partition(":")[2])


def forget_all() -> None:
    """Drop every remembered secret (tests; a process that starts over)."""
    _known.clear()


def scrub(text: str) -> str:
    """`text` with every remembered secret and every credential-looking part replaced by ***."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _TOKEN_QUERY.sub(lambda m: f"{m['name']}={MASK}" if m["value"] else m[0], text)
    return _HEADER.sub(lambda m: f"{m['name']}{MASK}", text)


def scrub_url(url: str) -> str:
    """A URL value as printed: everything between the scheme and the last `@` masked, whatever it holds."""
    scheme, sep, rest = url.partition("://")
    if "@" in (rest if sep else scheme):
        host = (rest if sep else scheme).rpartition("@")[2]
        url = f"{scheme}{sep}{MASK}@{host}" if sep else f"{MASK}@{host}"
    return scrub(url)


def scrub_lines(lines: Iterable[str]) -> list[str]:
    return [scrub(line) for line in lines]


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs each record's final message (arguments merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Scrub every record that reaches the handlers of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, ScrubFilter) for existing in handler.filters):
            handler.addFilter(ScrubFilter())
