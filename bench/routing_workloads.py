"""The routing benchmark's three workloads as sessions of chat turns, generated the way vLLM's
RandomDataset makes its prompts (random ids from the tokenizer's vocabulary, special tokens left
out, decoded to text), each cell from its own seed, so no cell finds another's text in a cache.

- random: one user turn of RANDOM_TOKENS random tokens per session (vLLM's `--dataset-name random`);
- shared: many chats with one SYSTEM_TOKENS-token system prompt and a short question each;
- multiturn: conversations that open on a DOCUMENT_TOKENS-token document and ask TURNS short
  questions, each turn resending the whole history (the replies included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SYSTEM_TOKENS = 1024
RANDOM_TOKENS = 512
DOCUMENT_TOKENS = 512
QUESTION_TOKENS = 32
TURNS = 2
WORKLOADS = ("random", "shared", "multiturn")


@dataclass
class Session:
    """One client conversation: an optional system prompt, then user turns sent one after another."""

    sid: str
    turns: list[str]
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    def messages(self, turn: int) -> list[dict[str, str]]:
        """What turn `turn` sends: the system prompt, every earlier turn and reply, the new question."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.history, {"role": "user", "content": self.turns[turn]}]

    def answered(self, turn: int, reply: str) -> None:
        self.history += [{"role": "user", "content": self.turns[turn]}, {"role": "assistant", "content": reply}]


class Text:
    """Random text of a given token count from the model's own tokenizer."""

    def __init__(self, weights: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(weights))
        special = set(self.tokenizer.all_special_ids)
        self.allowed = np.array([i for i in range(len(self.tokenizer)) if i not in special])

    def __call__(self, rng: np.random.Generator, tokens: int) -> str:
        return str(self.tokenizer.decode(rng.choice(self.allowed, size=tokens).tolist()))


def sessions(text: Text, workload: str, requests: int, seed: int) -> list[Session]:
    """`requests` requests of `workload` as sessions; `seed` makes this cell's text its own."""
    rng = np.random.default_rng(seed)
    if workload == "random":
        return [Session(f"{seed}-{n}", [text(rng, RANDOM_TOKENS)]) for n in range(requests)]
    if workload == "shared":
        system = text(rng, SYSTEM_TOKENS)
        return [Session(f"{seed}-{n}", [text(rng, QUESTION_TOKENS)], system) for n in range(requests)]
    if workload == "multiturn":
        return [Session(f"{seed}-{n}", [text(rng, DOCUMENT_TOKENS) + "\n\n" + text(rng, QUESTION_TOKENS),
                                        *(text(rng, QUESTION_TOKENS) for _ in range(TURNS - 1))])
                for n in range(max(1, requests // TURNS))]
    raise ValueError(f"unknown workload {workload!r}")


def describe() -> dict[str, str]:
    """Each workload in one line, for the report."""
    return {"random": f"one turn of {RANDOM_TOKENS} random tokens (vLLM's random dataset), no shared prefix",
            "shared": f"chats with one {SYSTEM_TOKENS}-token system prompt and a {QUESTION_TOKENS}-token question "
                      "each",
            "multiturn": f"conversations of {TURNS} turns on a {DOCUMENT_TOKENS}-token document, "
                         f"{QUESTION_TOKENS}-token questions, each turn resending the history"}
