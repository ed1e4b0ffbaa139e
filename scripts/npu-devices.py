"""The NPU cards Compose hands to `serve`: every /dev/davinciN and both visible-device variables.

    scripts/npu-devices.py OUT   (prints the first card, for compose/npu.yaml's NPU_DEVICE)

Compose cannot loop over a list, so this writes OUT, an override naming each card. The cards
are NPU_DEVICES (a list such as 0,1), else NPU_DEVICE (one card), else the first N, where N
is what the settings (.env and the environment) give one server: TENSOR_PARALLEL_SIZE x
PIPELINE_PARALLEL_SIZE x DATA_PARALLEL_SIZE, the model profile's included. A bad list exits 2
with one line. Inside the container, `entrypoint doctor` checks the cards against the same
product and both variables against each other.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from entrypoint.errors import SettingsError, run_cli  # noqa: E402
from entrypoint.settings import resolve_settings  # noqa: E402

CARD_LIST = re.compile(r"[0-9]{1,3}(,[0-9]{1,3})*")
ALLOWED = "card numbers separated by commas, such as 0 or 0,1 (npu-smi info lists them)"


class BadCards(SettingsError):
    """NPU_DEVICES or NPU_DEVICE is not a list of cards; the message is the one line to print."""

    def __init__(self, line: str) -> None:
        super().__init__([line])


def parse_cards(name: str, text: str) -> list[int]:
    """The cards a list names, in order; BadCards names the variable, the value and what is allowed."""
    value = text.replace(" ", "")
    if not CARD_LIST.fullmatch(value):
        raise BadCards(f"{name}={text!r}: not a list of card numbers; allowed: {ALLOWED}")
    cards = [int(card) for card in value.split(",")]
    if len(set(cards)) != len(cards):
        raise BadCards(f"{name}={text!r}: a card is named twice; allowed: {ALLOWED}, each once")
    return cards


def cards_from_settings(environ: Mapping[str, str], env_file: Path | None) -> int:
    """How many cards one server's ranks use, as the entrypoint will resolve its settings (1 when
    they do not resolve: the container then says why, in one line)."""
    try:
        return resolve_settings({**environ, "PLATFORM": "npu"}, env_file=env_file).settings.cards_per_model
    except SettingsError:
        return 1


def choose_cards(environ: Mapping[str, str], env_file: Path | None) -> list[int]:
    for name in ("NPU_DEVICES", "NPU_DEVICE"):
        if environ.get(name, "").strip():
            return parse_cards(name, environ[name])
    return list(range(cards_from_settings(environ, env_file)))


def override(cards: list[int]) -> str:
    """The Compose override: the cards' device nodes (compose/npu.yaml has the manager devices and
    the first card; Compose merges devices by path) and the same list in both variables."""
    listed = ",".join(map(str, cards))
    lines = ["# Written by scripts/npu-devices.py (make up/down/logs on NPU); not in git.",
             "services:", "  serve:", "    environment:",
             f'      ASCEND_VISIBLE_DEVICES: "{listed}"', f'      ASCEND_RT_VISIBLE_DEVICES: "{listed}"',
             "    devices:", *(f"      - /dev/davinci{card}" for card in cards)]
    return "\n".join(lines) + "\n"


def main(out: Path, environ: Mapping[str, str]) -> int:
    env_file = ROOT / ".env"
    cards = choose_cards(environ, env_file if env_file.is_file() else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(override(cards))
    print(cards[0])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT")
    sys.exit(run_cli(lambda: main(Path(sys.argv[1]), os.environ)))
