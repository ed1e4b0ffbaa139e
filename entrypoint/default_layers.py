"""The default layers the templates folder holds: a platform's file, the image version's layer
(IMAGE_VERSION, templates/images.yaml), the platform's named variants (PLATFORM_VARIANT) and
the model profiles, each keyed by setting name.

Adding a model or a platform variant is editing a YAML file, not code. This module only
reads the files; which layer wins is the resolver's business.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE_TEMPLATES = Path(__file__).parent / "_templates"
TEMPLATES_DIR = PACKAGE_TEMPLATES if PACKAGE_TEMPLATES.is_dir() else Path(__file__).parent.parent / "templates"
PLATFORMS = ("npu", "cuda", "cpu")
GENERIC_PROFILE = "generic"  # no profile file: the settings' own defaults


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def profile_names(templates_dir: Path) -> list[str]:
    """Names of the model profiles available."""
    return sorted(p.stem for p in (templates_dir / "models").glob("*.yaml"))


def load_profile(templates_dir: Path, name: str) -> dict[str, Any]:
    """One model profile file as a mapping."""
    return _read_yaml(templates_dir / "models" / f"{name}.yaml")


def find_profile(templates_dir: Path, wanted: str, model_id: str) -> tuple[str, list[str]]:
    """The profile named `wanted`, else the one serving `model_id`, else `generic`; plus errors.

    A profile serves a model when it names that MODEL_ID, or names none and is called after
    the model (templates/models/gemma-3-270m-it.yaml serves */gemma-3-270m-it). The profile
    called after the model goes first, since variants such as the test bed's share an id.
    """
    names = profile_names(templates_dir)
    if wanted:
        if wanted in names:
            return wanted, []
        return GENERIC_PROFILE, [f"MODEL_PROFILE={wanted!r}: no such profile; allowed: {', '.join(names)}"]
    named_after = model_id.rsplit("/", 1)[-1]
    for name in sorted(names, key=lambda n: n != named_after):
        serves = (load_profile(templates_dir, name).get("settings") or {}).get("MODEL_ID")
        if serves == model_id or (serves is None and name == named_after):
            return name, []
    return GENERIC_PROFILE, []


def platform_settings(templates_dir: Path, platform: str) -> dict[str, Any]:
    """The defaults one platform file sets, by setting name."""
    return _read_yaml(templates_dir / "platforms" / f"{platform}.yaml").get("settings") or {}


def variant_names(templates_dir: Path, platform: str) -> list[str]:
    """The named variants of one platform's defaults (templates/platforms/<platform>/*.yaml)."""
    return sorted(p.stem for p in (templates_dir / "platforms" / platform).glob("*.yaml"))


def variant_settings(templates_dir: Path, platform: str, variant: str) -> tuple[dict[str, Any], list[str]]:
    """The defaults a platform variant sets, or an error naming the variants there are."""
    if not variant:
        return {}, []
    names = variant_names(templates_dir, platform)
    if variant not in names:
        allowed = ", ".join(names) if names else f"none ({platform} has no variants)"
        return {}, [f"PLATFORM_VARIANT={variant!r}: no such variant for {platform}; allowed: {allowed}"]
    return _read_yaml(templates_dir / "platforms" / platform / f"{variant}.yaml").get("settings") or {}, []


def profile_settings(templates_dir: Path, profile_name: str, platform: str) -> dict[str, Any]:
    """The model profile's defaults, its per-platform ones on top."""
    if profile_name == GENERIC_PROFILE:
        return {}
    profile = load_profile(templates_dir, profile_name)
    return {**(profile.get("settings") or {}), **((profile.get("platforms") or {}).get(platform) or {})}


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
def image_catalogue(templates_dir: Path = TEMPLATES_DIR) -> dict[str, Any]:
    """templates/images.yaml, read once per process: every resolution and base image consults it."""
    return _read_yaml(templates_dir / "images.yaml")


def supported_images(templates_dir: Path = TEMPLATES_DIR) -> dict[str, Image]:
    """Tag -> Image, in the file's order (the first is the default IMAGE_VERSION)."""
    return {tag: Image(tag=tag, vllm=str(v["vllm"]), python=str(v["python"]), cann=str(v["cann"]),
                       cuda=str(v["cuda"]), settings=dict(v.get("settings") or {}))
            for tag, v in image_catalogue(templates_dir)["images"].items()}


def image_settings(templates_dir: Path, platform: str, tag: str) -> tuple[dict[str, Any], list[str]]:
    """The defaults an image version sets on NPU and CUDA, or the error naming the supported tags."""
    images = supported_images(templates_dir)
    if tag not in images:
        return {}, [f"IMAGE_VERSION={tag!r}: not a supported image; allowed: {', '.join(images)}"]
    return (images[tag].settings if platform in ("npu", "cuda") else {}), []


SUPPORTED_IMAGES = supported_images()
DEFAULT_IMAGE = next(iter(SUPPORTED_IMAGES))  # the first listed
