"""The roofline arithmetic: bytes per decode step from safetensors headers, the bound and the fraction."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from verification import roofline

HIDDEN, VOCAB, FFN = 8, 100, 16


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A real .safetensors file: 8-byte header length, JSON header, then the raw data."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = array.astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def tiny_model(folder: Path, tied: bool = True, dtype: str = "bfloat16") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"dtype": dtype, "tie_word_embeddings": tied}))
    layers = {"model.embed_tokens.weight": np.zeros((VOCAB, HIDDEN)),
              "model.layers.0.mlp.up_proj.weight": np.zeros((FFN, HIDDEN)),
              "model.layers.0.input_layernorm.weight": np.zeros(HIDDEN)}
    if not tied:
        layers["lm_head.weight"] = np.zeros((VOCAB, HIDDEN))
    # two shards: the count spans every file
    first, second = dict(list(layers.items())[:1]), dict(list(layers.items())[1:])
    write_safetensors(folder / "model-00001-of-00002.safetensors", first)
    write_safetensors(folder / "model-00002-of-00002.safetensors", second)
    return folder


def test_tied_embedding_counts_once_as_lm_head_plus_one_row(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m")
    params = VOCAB * HIDDEN + HIDDEN + FFN * HIDDEN + HIDDEN
    assert roofline.decode_bytes_per_step(model, "float32") == params * 4
    assert roofline.decode_bytes_per_step(model, "bfloat16") == params * 2


def test_untied_lm_head_in_full_and_embedding_one_row(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m", tied=False)
    params = VOCAB * HIDDEN + HIDDEN + FFN * HIDDEN + HIDDEN
    assert roofline.decode_bytes_per_step(model, "float16") == params * 2


def test_auto_dtype_is_the_checkpoints(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m", dtype="bfloat16")
    assert roofline.served_dtype("auto", model) == "bfloat16"
    assert roofline.served_dtype(None, model) == "bfloat16"
    assert roofline.decode_bytes_per_step(model, "auto") == roofline.decode_bytes_per_step(model, "bfloat16")


def test_unknown_dtype_and_empty_folder_are_errors(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m")
    with pytest.raises(ValueError, match="int4"):
        roofline.decode_bytes_per_step(model, "int4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        roofline.tensor_shapes(tmp_path / "empty")


def test_bound_and_fraction() -> None:
    row = roofline.roofline(bytes_per_step=500_000_000, bandwidth_gbps=100.0, measured_tokens_per_s=50.0)
    assert row["bound_tokens_per_s"] == pytest.approx(200.0)
    assert row["fraction_of_bound"] == pytest.approx(0.25)
    assert roofline.roofline(500_000_000, 100.0, None)["fraction_of_bound"] is None


def test_published_bandwidth_by_longest_prefix() -> None:
    assert roofline.published_bandwidth_gbps("Ascend910B4") == roofline.PUBLISHED_BANDWIDTH_GBPS["Ascend910B"]
    assert roofline.published_bandwidth_gbps("Ascend 910B4") == roofline.PUBLISHED_BANDWIDTH_GBPS["Ascend910B"]
    assert roofline.published_bandwidth_gbps("SomethingElse") is None
    assert roofline.published_bandwidth_gbps(None) is None


def test_copy_bandwidth_is_a_positive_rate() -> None:
    assert roofline.measure_copy_bandwidth_gbps(seconds=0.05, megabytes=8) > 0
