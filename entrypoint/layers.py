"""Default layers under the user's settings, lowest first: the platform's file, a named
variant of it (PLATFORM_VARIANT), on CPU the machine's tuning (CPU_TUNING), then the
model profile's.

The files are YAML in the templates folder, keyed by setting name, so adding a model
or a platform variant is editing a file, not code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from entrypoint import cpu_features, cpu_tuning
from entrypoint.platform_detect import detect_platform

PACKAGE_TEMPLATES = Path(__file__).parent / "_templates"
TEMPLATES_DIR = PACKAGE_TEMPLATES if PACKAGE_TEMPLATES.is_dir() else Path(__file__).parent.parent / "templates"
PLATFORMS = ("npu", "cuda", "cpu")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; variables without a value are left out."""
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


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


def find_profile(templates_dir: Path, user: dict[str, str]) -> tuple[str, list[str]]:
    """The profile the user named, else the one serving MODEL_ID (the one named after it first,
    since variants such as the test bed's share the id), else `generic`; plus errors."""
    names = profile_names(templates_dir)
    wanted = user.get("MODEL_PROFILE")
    if wanted:
        if wanted in names:
            return wanted, []
        return "generic", [f"MODEL_PROFILE={wanted!r}: no such profile; allowed: {', '.join(names)}"]
    model_id = user.get("MODEL_ID", "google/gemma-3-270m-it")
    named_after = model_id.rsplit("/", 1)[-1]
    for name in sorted(names, key=lambda n: n != named_after):
        if load_profile(templates_dir, name).get("settings", {}).get("MODEL_ID") == model_id:
            return name, []
    return "generic", []


def resolve_platform(user: dict[str, str]) -> str:
    """The platform whose defaults apply: the user's choice, or the detected one for auto."""
    choice = user.get("PLATFORM", "auto").strip().lower()
    return detect_platform() if choice == "auto" else choice


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


def profile_layer(templates_dir: Path, profile_name: str, platform: str) -> dict[str, Any]:
    """The model profile's defaults, its per-platform ones on top."""
    if profile_name == "generic":
        return {}
    profile = load_profile(templates_dir, profile_name)
    return {**(profile.get("settings") or {}), **((profile.get("platforms") or {}).get(platform) or {})}


def tuning_layer(platform: str, above: dict[str, Any], below: dict[str, Any]) -> list[cpu_tuning.Choice]:
    """On CPU with CPU_TUNING not off, the machine's choices for the settings no higher layer sets."""
    if platform != "cpu" or str(above.get("CPU_TUNING", "auto")).strip().lower() == "off":
        return []
    return cpu_tuning.applicable(cpu_tuning.choose(cpu_features.read_host(), {**below, **above}), above)


def merge_defaults(user: dict[str, str], templates_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Platform < platform variant < CPU tuning < profile < profile's platform part < user values."""
    platform = resolve_platform(user)
    profile_name, errors = find_profile(templates_dir, user)
    merged: dict[str, Any] = {}
    if platform in PLATFORMS:
        merged.update(platform_settings(templates_dir, platform))
        variant, variant_errors = variant_settings(templates_dir, platform,
                                                         user.get("PLATFORM_VARIANT", "").strip())
        merged.update(variant)
        errors = errors + variant_errors
    above = {**profile_layer(templates_dir, profile_name, platform), **user}
    merged.update({c.setting: c.value for c in tuning_layer(platform, above, merged)})
    merged.update(above)
    merged["PLATFORM"] = platform if platform in PLATFORMS else user.get("PLATFORM")
    merged["MODEL_PROFILE"] = profile_name
    model_id = str(merged.get("MODEL_ID") or "google/gemma-3-270m-it")
    merged.setdefault("SERVED_MODEL_NAME", model_id.rsplit("/", 1)[-1])
    return merged, errors
