"""A vLLM start split into phases: every output line stamped on arrival, then read back by markers.

TORCH_ENV names torch's own log lines for Dynamo's trace, Inductor's compile and its FX
graph cache hits: without them the compile and the warm-up pass show as one phase.

vLLM's own log stamps have 1 s resolution and miss the lines that are not log records
(warnings, progress bars); the bench stamps each line as the supervisor's reader gets it
(seconds since spawn, the child unbuffered), so phases of a few seconds are measured.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, TextIO

TORCH_ENV = {"TORCH_LOGS": "dynamo,inductor"}
STAMPED = re.compile(r"^\s*(\d+\.\d+) (.*)$")

# (phase ending at this marker, what the span before it holds, the marker): in the order a start
# passes them; a marker missing from a log (no worker process in a two-process layout, no compile
# when eager) merges its span into the next phase found.
MARKERS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("api_import", "API server: interpreter start and imports of torch and vLLM",
     re.compile(r"\(APIServer pid=\d+\)")),
    ("api_config", "API server: engine config (model config, tokenizer), up to spawning the engine core",
     re.compile(r"\(APIServer pid=\d+\).*(Model Runner V2|Chunked prefill is enabled|Using max model len)")),
    ("engine_import", "API server: its renderer's tokenizer (AutoTokenizer, vocabulary); then the engine-core "
     "process: spawn and imports",
     re.compile(r"\(EngineCore pid=\d+\).*Initializing a V1 LLM engine")),
    ("worker_import", "worker process: spawn and imports",
     re.compile(r"\((?:Worker|VllmWorker)\S* pid=\d+\)")),
    ("worker_init", "worker: device and torch.distributed init",
     re.compile(r"Starting to load model")),
    ("weights", "weights: model init and loading",
     re.compile(r"Warming up model for the compilation")),
    ("dynamo_trace", "torch.compile: Dynamo tracing the model's bytecode (at every start: vLLM 0.32 on the CPU keeps "
     "no loadable compiled artifact)", re.compile(r"Step 1: torchdynamo done tracing")),
    ("inductor", "torch.compile: Inductor compiling the graph (cold) or taking it from its FX graph cache (warm)",
     re.compile(r"Step 2: done compiler function")),
    ("dummy_run", "the warm-up forward pass of MAX_NUM_BATCHED_TOKENS tokens (vLLM's profile run; without "
     "TORCH_LOGS=dynamo the compile too)", re.compile(r"Warming up done")),
    ("kv_cache", "KV cache allocation and the engine's init to its last line",
     re.compile(r"init engine \(profile, create kv cache")),
    ("engine_handoff", "engine core after its init (its structured-output manager loads the tokenizer again) "
     "until the API server hears it is ready",
     re.compile(r"\(APIServer pid=\d+\).*Supported tasks")),
    ("api_state", "API server: serving state; its renderer's warm-up loads the tokenizer a third time, as an "
     "AutoProcessor, to look for a processor chat template",
     re.compile(r"Starting vLLM server on")),
)
READY_PHASE = ("api_finish", "API server: HTTP server start and the first answered readiness poll")

# vLLM's own time for its engine's start: "init engine (profile, create kv cache, warmup model) took 12.3 s".
ENGINE_INIT = re.compile(r"init engine \(.*\) took ([\d.]+) s")
COMPILE_NUMBERS = {
    "engine_init_s": ENGINE_INIT,
    "weights_s": re.compile(r"Loading weights took ([\d.]+) s"),
}


class StampedLog:
    """A text sink for ChildProcess: each line written with the seconds since `started` in front."""

    def __init__(self, sink: TextIO, started: float) -> None:
        self.sink, self.started = sink, started

    def write(self, line: str) -> int:
        return self.sink.write(f"{time.monotonic() - self.started:9.3f} {line}")

    def flush(self) -> None:
        self.sink.flush()


def stamped_lines(log: Path) -> list[tuple[float, str]]:
    """(seconds since spawn, text) of every stamped line."""
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        if match := STAMPED.match(raw):
            lines.append((float(match.group(1)), match.group(2)))
    return lines


def marker_times(lines: list[tuple[float, str]]) -> dict[str, float]:
    """The first time each marker's line appears, keeping only markers in start order."""
    found: dict[str, float] = {}
    floor = 0.0
    for name, _, pattern in MARKERS:
        hit = next((t for t, text in lines if t >= floor and pattern.search(text)), None)
        if hit is not None:
            found[name], floor = hit, hit
    return found


def phases(log: Path, ready_s: float) -> dict[str, float]:
    """Seconds of each phase found, ending with the API server's finish at ready_s; they add up to ready_s."""
    found = marker_times(stamped_lines(log))
    result, previous = {}, 0.0
    for name, _, _ in MARKERS:
        if name in found:
            result[name], previous = round(found[name] - previous, 2), found[name]
    result[READY_PHASE[0]] = round(ready_s - previous, 2)
    return result


def compile_numbers(log: Path) -> dict[str, Any]:
    """What vLLM itself reports about the compile and the engine init (seconds), where it says it."""
    text = log.read_text(errors="replace")
    numbers: dict[str, Any] = {}
    for key, pattern in COMPILE_NUMBERS.items():
        if match := pattern.search(text):
            numbers[key] = float(match.group(1))
    numbers["fx_graph_cache"] = "hit" if "fx graph cache hit" in text else "miss" if "fx graph cache miss" in text \
        else None
    return numbers


def describe() -> list[tuple[str, str]]:
    """(phase, what it holds) in start order, for the report."""
    return [(name, what) for name, what, _ in MARKERS] + [READY_PHASE]
