"""The vllm-ascend images the bundle supports (templates/images.yaml): what each carries,
its base image name, and its layer of defaults."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from entrypoint.default_layers import TEMPLATES_DIR
from entrypoint.settings import Settings

DEFAULT_IMAGE = str(Settings.model_fields["image_version"].default)
DEFAULT_HARDWARE = "a2"


@dataclass(frozen=True)
class Image:
    """One supported image tag: the versions inside it and its defaults layer."""

    tag: str
    vllm: str
    python: str
    cann: str
    cuda: str  # the vllm-openai image of the same vLLM
    settings: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _catalogue(templates_dir: Path) -> dict[str, Any]:
    # Read once per process: every settings resolution and base_image() consult it.
    return yaml.safe_load((templates_dir / "images.yaml").read_text())


def supported_images(templates_dir: Path = TEMPLATES_DIR) -> dict[str, Image]:
    """Tag -> Image, in the file's order."""
    return {tag: Image(tag=tag, vllm=str(v["vllm"]), python=str(v["python"]), cann=str(v["cann"]),
                       cuda=str(v["cuda"]), settings=dict(v.get("settings") or {}))
            for tag, v in _catalogue(templates_dir)["images"].items()}


def hardware_suffixes(templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """Ascend hardware -> the image tag's suffix (a2: none)."""
    return {str(k): str(v) for k, v in _catalogue(templates_dir)["hardware"].items()}


def hardware_error(hardware: str, templates_dir: Path = TEMPLATES_DIR) -> str | None:
    """The one line refusing an NPU_HARDWARE the images are not built for, else None."""
    known = hardware_suffixes(templates_dir)
    if hardware in known:
        return None
    return f"NPU_HARDWARE={hardware!r}: not an Ascend hardware the images are built for; allowed: {', '.join(known)}"


def base_image(platform: str, tag: str = DEFAULT_IMAGE, hardware: str = DEFAULT_HARDWARE,
               templates_dir: Path = TEMPLATES_DIR) -> str:
    """The vendor image the accelerator stage builds on; `prefix` mirrors are the caller's."""
    image = supported_images(templates_dir)[tag]
    if platform == "cuda":
        return image.cuda
    return f"{_catalogue(templates_dir)['registry_image']}:{tag}{hardware_suffixes(templates_dir)[hardware]}"


def image_layer(templates_dir: Path, platform: str, tag: str) -> tuple[dict[str, Any], list[str]]:
    """The defaults an image version sets on NPU and CUDA, or the error naming the supported tags."""
    images = supported_images(templates_dir)
    if tag not in images:
        return {}, [f"IMAGE_VERSION={tag!r}: not a supported image; allowed: {', '.join(images)}"]
    return (images[tag].settings if platform in ("npu", "cuda") else {}), []


SUPPORTED_IMAGES = supported_images()
