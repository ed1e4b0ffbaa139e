"""The base image an NPU build starts from, for the image version and hardware it serves.

    eval "$(scripts/base-image.py)"   # sets BASE_IMAGE and IMAGE_VERSION for `docker compose build`

IMAGE_VERSION is the setting (the environment, then .env, then its default), NPU_HARDWARE the
Ascend hardware (a2 by default; a3 and 310p images carry a tag suffix, templates/images.yaml).
A BASE_IMAGE already set wins: a mirror's copy or a local build. The image keeps
IMAGE_VERSION as ENV, so the entrypoint inside renders for the vLLM it was built on. A bad
value exits 2 with one line.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from entrypoint import images  # noqa: E402
from entrypoint.errors import SettingsError, run_cli  # noqa: E402
from entrypoint.settings import resolve_settings  # noqa: E402


def build_args(environ: Mapping[str, str], env_file: Path | None) -> dict[str, str]:
    """BASE_IMAGE and IMAGE_VERSION for the NPU build; SettingsError with the one line for a bad value."""
    hardware = environ.get("NPU_HARDWARE", "").strip() or images.DEFAULT_HARDWARE
    error = images.hardware_error(hardware)
    if error:
        raise SettingsError([error])
    tag = resolve_settings({**environ, "PLATFORM": "npu"}, env_file=env_file).settings.image_version
    base = environ.get("BASE_IMAGE", "").strip() or images.base_image("npu", tag, hardware)
    return {"BASE_IMAGE": base, "IMAGE_VERSION": tag}


def main(environ: Mapping[str, str]) -> int:
    env_file = ROOT / ".env"
    args = build_args(environ, env_file if env_file.is_file() else None)
    print(" ".join(f"export {name}={shlex.quote(value)};" for name, value in args.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(lambda: main(os.environ)))
