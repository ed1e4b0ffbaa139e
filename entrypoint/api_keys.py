"""The API key file: several keys, one per line, read under the rules of every secret file.

Blank lines and lines starting with # are ignored, so an operator can add a new key next
to the old one, roll clients over, then delete the old line. The settings read it once at
start (a bad file stops the start) and the API guard rereads it whenever it changes.
Stdlib only: the guard imports this inside vLLM's interpreter.
"""

from __future__ import annotations

import re
from pathlib import Path

from entrypoint.bounded_read import Unreadable, read_bounded

KEY_TEXT = re.compile(r"[\x21-\x7e]+")  # fits an HTTP header: printable ASCII, no spaces
KEY_ALLOWED = "printable ASCII without spaces"
KEY_FILE_ALLOWED = "a readable regular file with one key per line (blank lines and # comments are ignored)"
KEY_FILE_MAX_BYTES = 64 * 1024  # thousands of keys; this bounds a mistaken /dev/zero


def parse_keys(data: bytes) -> list[str]:
    """The keys a key file holds, in order; Unreadable (naming a line, never a key) when it is bad."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("the file is not UTF-8 text") from None
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if not KEY_TEXT.fullmatch(word):
            raise Unreadable(f"line {number} has spaces, control or non-ASCII characters; a key is {KEY_ALLOWED}")
        keys.append(word)
    if not keys:
        raise Unreadable("the file is empty or holds only comments: no key")
    return keys


def read_keys(path: Path) -> list[str]:
    """The keys of the file at `path`; Unreadable when it is no regular file, too large or bad."""
    return parse_keys(read_bounded(path, KEY_FILE_MAX_BYTES))
