"""Memory-bandwidth roofline of single-stream decoding: how close the measured decode speed is to the bound.

At batch 1 every decode step reads every weight once, and for a small model that read
dominates the step; so ``bandwidth / bytes read per step`` is an upper bound on
tokens/s, and the measured rate divided by it says how much of the machine is used.
Not counted: the KV cache (for Gemma 3 270M at ~400 tokens of context it is ~1 % of
the weights), activations, and the kernels' launch overheads (the main reason a
small model stays far below the bound on an accelerator).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

# Bytes per element of the dtypes vLLM serves.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# Published HBM bandwidth (GB/s) by device name prefix, longest prefix wins. The Ascend
# 910B figure is the vendor's headline number for the 910B family (~1.6 TB/s); binned
# parts (910B3/910B4) may be lower, so --device-bandwidth-gbps overrides it.
PUBLISHED_BANDWIDTH_GBPS = {
    "Ascend910B": 1600.0,
    "Ascend910": 1200.0,
}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one .safetensors file (8-byte little-endian length, then JSON)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def tensor_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Every tensor of the checkpoint by name, with its shape (headers only, no weights read)."""
    shapes: dict[str, list[int]] = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        shapes.update({name: info["shape"] for name, info in safetensors_header(path).items()})
    if not shapes:
        raise FileNotFoundError(f"no .safetensors files in {model_dir}")
    return shapes


def checkpoint_dtype(model_dir: Path) -> str:
    """The dtype config.json declares (`dtype`, or the older `torch_dtype`); float32 when absent."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    text_config = config.get("text_config", {})
    return str(config.get("dtype") or config.get("torch_dtype") or text_config.get("dtype")
               or text_config.get("torch_dtype") or "float32")


def served_dtype(dtype: str | None, model_dir: Path) -> str:
    """The dtype the weights are served in: the setting, or the checkpoint's for auto/unset."""
    return checkpoint_dtype(model_dir) if dtype in (None, "", "auto") else dtype


def _numel(shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def decode_parameters(shapes: dict[str, list[int]]) -> int:
    """Parameters one decode step reads.

    Every tensor is read in full, except the input embedding: the lookup reads one row
    (hidden_size values). With tied embeddings (Gemma) the checkpoint holds only the
    embedding matrix, and the LM head reads all of it, so it counts once in full as the
    LM head plus the one row of the lookup; an untied checkpoint's `lm_head` counts in
    full and its embedding as one row.
    """
    embeddings = [name for name in shapes if name.endswith("embed_tokens.weight")]
    tied = not any(name.endswith("lm_head.weight") for name in shapes)
    total = 0
    for name, shape in shapes.items():
        if name in embeddings:
            row = shape[-1]
            total += (_numel(shape) + row) if tied else row
        else:
            total += _numel(shape)
    return total


def decode_bytes_per_step(model_dir: Path, dtype: str | None) -> int:
    """Bytes of weights read per decode step at batch 1: decode parameters x bytes per element of the served dtype."""
    dtype = served_dtype(dtype, Path(model_dir))
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPE_BYTES)}")
    return decode_parameters(tensor_shapes(Path(model_dir))) * DTYPE_BYTES[dtype]


def measure_copy_bandwidth_gbps(seconds: float = 2.0, megabytes: int = 256, min_repeats: int = 3) -> float:
    """Best-of-N large array copy, in GB/s counting the read and the write (STREAM "copy" convention).

    The array is far larger than any CPU cache, so this is main-memory bandwidth as one
    process sees it; it runs for about `seconds` (at least `min_repeats` copies).
    """
    count = megabytes * 2**20 // 4
    source = np.ones(count, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch every page before timing
    best = float("inf")
    deadline = time.perf_counter() + seconds
    repeats = 0
    while repeats < min_repeats or time.perf_counter() < deadline:
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
        repeats += 1
    return 2 * source.nbytes / best / 1e9


def published_bandwidth_gbps(device_name: str | None) -> float | None:
    """The published bandwidth of a device by name (longest matching prefix), None if unknown."""
    if not device_name:
        return None
    name = device_name.replace(" ", "")
    matches = [prefix for prefix in PUBLISHED_BANDWIDTH_GBPS if name.startswith(prefix)]
    return PUBLISHED_BANDWIDTH_GBPS[max(matches, key=len)] if matches else None


def npu_device_name() -> str | None:
    """The first Ascend device's name (torch_npu), None where there is none."""
    try:
        import torch
        import torch_npu  # noqa: F401  (registers torch.npu)

        return str(torch.npu.get_device_name(0))
    except Exception:  # no torch_npu, no device, no driver: all mean "not an NPU here"
        return None


def roofline(bytes_per_step: int, bandwidth_gbps: float, measured_tokens_per_s: float | None) -> dict[str, Any]:
    """Upper bound tokens/s = bandwidth / bytes per step, and the measured fraction of it."""
    bound = bandwidth_gbps * 1e9 / bytes_per_step
    fraction = measured_tokens_per_s / bound if measured_tokens_per_s else None
    return {"bytes_per_step": bytes_per_step, "bandwidth_gbps": bandwidth_gbps,
            "bound_tokens_per_s": bound, "measured_tokens_per_s": measured_tokens_per_s,
            "fraction_of_bound": fraction}
