"""The vllm-ascend images the bundle supports (templates/images.yaml) and what each carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from entrypoint.layers import TEMPLATES_DIR


@dataclass(frozen=True)
class Image:
    """One supported image tag: the vLLM and Python versions inside it."""

    tag: str
    vllm: str
    python: str


def supported_images(templates_dir: Path = TEMPLATES_DIR) -> dict[str, Image]:
    """Tag -> Image, in the file's order."""
    data = yaml.safe_load((templates_dir / "images.yaml").read_text())["images"]
    return {tag: Image(tag=tag, vllm=str(v["vllm"]), python=str(v["python"])) for tag, v in data.items()}


SUPPORTED_IMAGES = supported_images()
