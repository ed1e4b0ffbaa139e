"""The interactive chat: read a line, print the answer as it streams, keep the conversation."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from verification.client import Messages

EXIT_WORDS = ("/exit", "/quit")
PROMPT = "you> "


def chat_loop(reply: Callable[[Messages], Iterator[str]], system: str | None = None,
              read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> int:
    """Run until /exit or end of input (Ctrl-D); `reply` streams the assistant's text for the history."""
    history: Messages = [{"role": "system", "content": system}] if system else []
    out.write("Chat with the model; /exit or Ctrl-D ends, /reset clears the history.\n")
    while True:
        try:
            line = read(PROMPT).strip()
        except EOFError:
            out.write("\n")
            return 0
        if line in EXIT_WORDS:
            return 0
        if line == "/reset":
            del history[1 if system else 0:]
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        history.append({"role": "assistant", "content": _show(reply(history), out)})


def _show(pieces: Iterator[str], out: TextIO) -> str:
    """Print each piece as it arrives; return the whole text."""
    text = []
    out.write("model> ")
    for piece in pieces:
        out.write(piece)
        out.flush()
        text.append(piece)
    out.write("\n")
    return "".join(text)
