"""What a setting becomes on its way to vLLM: a `vllm serve` flag (`EngineFlag`), an exported
variable (`Export`), or both. A ``Settings`` field declares its forms (``setting(...,
flag=..., export=...)``); `engine_flags` builds the argv and `render` the environment from
those declarations, so a setting is described once, where it is defined.

Kinds of flag:
  value     `--flag VALUE`, always rendered
  optional  `--flag VALUE`, left to vLLM's default when the setting is unset
  json      `--flag '{...}'` (optional); the engine gets the parsed object
  switch    `--flag` / `--no-flag`, or nothing when unset
  present   `--flag` when true, nothing when false (vLLM's default is false)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from entrypoint.value_grammar import env_text

Kind = Literal["value", "optional", "json", "switch", "present"]
ALL_PLATFORMS = frozenset({"npu", "cuda", "cpu"})
# vLLM's CPU build sizes its KV cache with VLLM_CPU_KVCACHE_SPACE and ignores a device's share.
ACCELERATORS = frozenset({"npu", "cuda"})


def fraction(value: float) -> str:
    """0.9 -> "0.90": at least two decimals, as the guide writes it."""
    text = f"{value:.2f}"
    return text if float(text) == value else repr(value)


def digit(value: bool) -> str:
    """True -> "1": the form vLLM's envs.py reads some switches in."""
    return "1" if value else "0"


@dataclass(frozen=True)
class EngineFlag:
    """One setting as a vLLM flag and an EngineArgs field."""

    flag: str
    kind: Kind
    field: str | None  # the EngineArgs field; None: only the API server reads it
    aliases: tuple[str, ...] = ()  # other spellings vLLM's parser accepts
    platforms: frozenset[str] = ALL_PLATFORMS
    text: Callable[[Any], str] = str
    setting: str = ""  # the environment variable, filled in from the field it is declared on

    @property
    def attribute(self) -> str:
        """The Settings field."""
        return self.setting.lower()

    @property
    def options(self) -> tuple[str, ...]:
        """Every option string vLLM knows this flag by, `--no-` forms included."""
        negated = (f"--no-{self.flag[2:]}",) if self.kind in ("switch", "present") else ()
        return (self.flag, *negated, *self.aliases)

    def words(self, value: Any) -> list[str]:
        """The argv words for a setting's value."""
        if self.kind in ("switch", "present"):
            if value is None or (self.kind == "present" and not value):
                return []
            return [self.flag if value else f"--no-{self.flag[2:]}"]
        return [] if value is None else [self.flag, self.text(value)]

    def kwarg(self, value: Any) -> Any:
        """The EngineArgs value for a setting's value (None: leave vLLM's default)."""
        return json.loads(value) if self.kind == "json" and value is not None else value


@dataclass(frozen=True)
class Export:
    """One setting exported by name into vLLM's environment (left out when unset)."""

    text: Callable[[Any], str] = env_text
    setting: str = ""  # filled in from the field it is declared on

    def pairs(self, value: Any) -> dict[str, str]:
        return {} if value is None else {self.setting: self.text(value)}


EXPORTED = Export()
