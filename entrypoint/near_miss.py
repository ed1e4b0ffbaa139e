"""Typos in setting names: an unknown variable that looks like a setting gets a warning
with the suggestion (not an error: other software shares the environment).

Plausible means word by word: the same words as a setting but one, and that one a
close spelling (difflib) or the setting's word with up to three letters more or less
(MAX_MODEL_LENGTH, TRUST_REMOTE_CODES); or the setting with its underscores dropped
(MODELID). So PATH, HOME, HOSTNAME, the Kubernetes service variables (ASCEND_SERVE_PORT)
and other tools' own variables (PYTORCH_CUDA_ALLOC_CONF, ASCEND_HOME_PATH) never warn.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable

ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
WORD_RATIO = 0.7  # VARIENT/VARIANT 0.86, PROT/PORT 0.75; HOME/HOST and PATH/PORT 0.5
MAX_EXTRA_LETTERS = 3  # LEN -> LENGTH; HOST -> HOSTNAME (4) is another word


def _close_words(typed: str, known: str) -> bool:
    if typed.startswith(known) or known.startswith(typed):
        return abs(len(typed) - len(known)) <= MAX_EXTRA_LETTERS
    return difflib.SequenceMatcher(None, typed, known).ratio() >= WORD_RATIO


def looks_like(typed: str, known: str) -> bool:
    """Whether `typed` reads as a misspelling of the setting name `known`."""
    if typed.replace("_", "") == known.replace("_", ""):
        return True
    typed_words, known_words = typed.split("_"), known.split("_")
    if len(typed_words) != len(known_words):
        return False
    differing = [(t, k) for t, k in zip(typed_words, known_words, strict=True) if t != k]
    return len(differing) == 1 and _close_words(*differing[0])


def near_misses(names: Iterable[str], settings: Collection[str]) -> list[str]:
    """One warning line per unknown upper-case name that looks like a setting, with the likeliest one."""
    lines = []
    for name in sorted(set(names) - set(settings)):
        if not ENV_NAME.fullmatch(name):
            continue
        candidates = [known for known in settings if looks_like(name, known)]
        if candidates:
            best = max(candidates, key=lambda known: difflib.SequenceMatcher(None, name, known).ratio())
            lines.append(f"{name} is not a setting of the bundle and is ignored; did you mean {best}?")
    return lines
