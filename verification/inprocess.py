"""vLLM in this process (offline inference, the pooling runner), configured from the bundle's settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from entrypoint.engine_flags import engine_kwargs
from entrypoint.render import render_command
from entrypoint.settings import Settings


def export_runtime_env(settings: Settings, model: Path) -> None:
    """Give in-process vLLM the environment the server would get (KV cache size, caches, offline hubs).

    Values already in the environment win, as they would for a server started by hand.
    """
    for key, value in render_command(settings, model).env.items():
        os.environ.setdefault(key, value)
    # vLLM logs to stdout by default; in this process stdout carries the answer (or --json).
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def llm_kwargs(settings: Settings, model: Path, dtype: str | None = None, **extra: Any) -> dict[str, Any]:
    """`vllm.LLM(...)` arguments equal to the server's flags (one table: entrypoint.engine_flags);
    `dtype` overrides DTYPE."""
    kwargs = engine_kwargs(settings, str(model))
    if dtype:
        kwargs["dtype"] = dtype
    return {**kwargs, **extra}


@contextmanager
def native_output_to_stderr() -> Iterator[None]:
    """File descriptor 1 is stderr inside: native code (torch's Gloo in vLLM 0.18, for one)
    prints to it past VLLM_LOGGING_STREAM, and the engine processes started here keep it."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def make_llm(settings: Settings, model: Path, dtype: str | None = None, **extra: Any) -> Any:
    """A `vllm.LLM` for these weights (imported late: vLLM takes seconds to import)."""
    export_runtime_env(settings, model)
    with native_output_to_stderr():
        from vllm import LLM

        return LLM(**llm_kwargs(settings, model, dtype, **extra))
