"""The NPU cards Compose hands to `serve`: every /dev/davinciN and both visible-device variables.

    scripts/npu-devices.py OUT                    (prints the first card, for compose/npu.yaml's NPU_DEVICE)
    entrypoint settings | scripts/npu-devices.py OUT --settings-json -

Compose cannot loop over a list, so this writes OUT, an override naming each card. The cards
are NPU_DEVICES (a list such as 0,1), else NPU_DEVICE (one card), both from the environment
then .env; else the first N, where N is what the settings give one server:
TENSOR_PARALLEL_SIZE x PIPELINE_PARALLEL_SIZE x DATA_PARALLEL_SIZE, the model profile's
included. Only the image has the libraries that resolve the settings, so `make up` counts
after the build, feeding `entrypoint settings` (run in the image) with --settings-json; without
it an OUT already counted is kept (make down, logs), else one card. A bad list exits 2 with
one line. Standard library only: the host needs nothing installed. Inside the container,
`entrypoint doctor` checks the cards against the same product and both variables.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_env import checkout_env_file, lookup, read_env_file

CARD_LIST = re.compile(r"[0-9]{1,3}(,[0-9]{1,3})*")
ALLOWED = "card numbers separated by commas, such as 0 or 0,1 (npu-smi info lists them)"
_LISTED = re.compile(r'ASCEND_VISIBLE_DEVICES: "([0-9,]+)"')


class BadCards(Exception):
    """NPU_DEVICES or NPU_DEVICE is not a list of cards; the message is the one line to print."""


def parse_cards(name: str, text: str) -> list[int]:
    """The cards a list names, in order; BadCards names the variable, the value and what is allowed."""
    value = text.replace(" ", "")
    if not CARD_LIST.fullmatch(value):
        raise BadCards(f"{name}={text!r}: not a list of card numbers; allowed: {ALLOWED}")
    cards = [int(card) for card in value.split(",")]
    if len(set(cards)) != len(cards):
        raise BadCards(f"{name}={text!r}: a card is named twice; allowed: {ALLOWED}, each once")
    return cards


def cards_from_settings(settings: Mapping[str, Any] | None) -> int:
    """How many cards one server's ranks use, from `entrypoint settings` JSON (1 when the
    settings did not resolve: the container then says why, in one line)."""
    try:
        sizes = [settings[name] or 1 for name in  # type: ignore[index]
                 ("TENSOR_PARALLEL_SIZE", "PIPELINE_PARALLEL_SIZE", "DATA_PARALLEL_SIZE")]
        count = sizes[0] * sizes[1] * sizes[2]
    except (KeyError, TypeError):
        return 1
    return count if isinstance(count, int) and 1 <= count <= 256 else 1


def explicit_cards(environ: Mapping[str, str], env_file: Mapping[str, str]) -> list[int] | None:
    """NPU_DEVICES, else NPU_DEVICE, as set; None when neither is."""
    for name in ("NPU_DEVICES", "NPU_DEVICE"):
        value = lookup(name, environ, env_file)
        if value:
            return parse_cards(name, value)
    return None


def counted_before(out: Path) -> list[int] | None:
    """The cards an earlier count wrote to OUT, if it did."""
    try:
        match = _LISTED.search(out.read_text())
    except OSError:
        return None
    return [int(card) for card in match.group(1).split(",")] if match else None


def choose_cards(environ: Mapping[str, str], env_file: Mapping[str, str], out: Path | None = None,
                 settings: Mapping[str, Any] | None = None, counted: bool = False) -> list[int]:
    """The cards: as set, else counted from `settings` (when `counted`), else OUT's, else card 0."""
    listed = explicit_cards(environ, env_file)
    if listed is not None:
        return listed
    if counted:
        return list(range(cards_from_settings(settings)))
    return (counted_before(out) if out is not None else None) or [0]


def override(cards: list[int]) -> str:
    """The Compose override: the cards' device nodes (compose/npu.yaml has the manager devices and
    the first card; Compose merges devices by path) and the same list in both variables."""
    listed = ",".join(map(str, cards))
    lines = ["# Written by scripts/npu-devices.py (make up/down/logs on NPU); not in git.",
             "services:", "  serve:", "    environment:",
             f'      ASCEND_VISIBLE_DEVICES: "{listed}"', f'      ASCEND_RT_VISIBLE_DEVICES: "{listed}"',
             "    devices:", *(f"      - /dev/davinci{card}" for card in cards)]
    return "\n".join(lines) + "\n"


def read_settings(text: str) -> dict[str, Any] | None:
    try:
        settings = json.loads(text)
    except ValueError:
        return None
    return settings if isinstance(settings, dict) else None


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1:] != ["--settings-json", "-"]):
        print("usage: npu-devices.py OUT [--settings-json -]", file=sys.stderr)
        return 2
    out, counted = Path(argv[0]), len(argv) == 3
    settings = read_settings(sys.stdin.read()) if counted else None
    try:
        cards = choose_cards(environ, read_env_file(checkout_env_file()), out, settings, counted)
    except BadCards as bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(override(cards))
    print(cards[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
