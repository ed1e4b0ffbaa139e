"""The base image an NPU build starts from, for the image version and hardware it serves.

    eval "$(scripts/base-image.py)"   # sets BASE_IMAGE and IMAGE_VERSION for `docker compose build`

IMAGE_VERSION is the setting (the environment, then .env, then its default), NPU_HARDWARE the
Ascend hardware (by default the first listed, whose images carry no tag suffix). Both are looked up in
templates/images.json, the copy of templates/images.yaml that `make docs` writes for the
host side, which has the standard library only. A BASE_IMAGE already set wins: a mirror's
copy or a local build. The image keeps IMAGE_VERSION as ENV, so the entrypoint inside renders
for the vLLM it was built on. A bad value exits 2 with one line.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_env import ROOT, checkout_env_file, lookup, read_env_file

CATALOGUE = ROOT / "templates" / "images.json"


class BadValue(Exception):
    """IMAGE_VERSION or NPU_HARDWARE is not one the images are built for; the one line to print."""


def catalogue(path: Path = CATALOGUE) -> dict[str, Any]:
    return json.loads(path.read_text())


def build_args(environ: Mapping[str, str], env_file: Path | None, images: Mapping[str, Any] | None = None
               ) -> dict[str, str]:
    """BASE_IMAGE and IMAGE_VERSION for the NPU build; BadValue with the one line for a bad value."""
    images = catalogue() if images is None else images
    from_file = read_env_file(env_file)
    hardware = lookup("NPU_HARDWARE", environ, from_file, images["default_hardware"])
    if hardware not in images["hardware"]:
        raise BadValue(f"NPU_HARDWARE={hardware!r}: not an Ascend hardware the images are built for; "
                       f"allowed: {', '.join(images['hardware'])}")
    tag = lookup("IMAGE_VERSION", environ, from_file, images["default_image"])
    if tag not in images["images"]:
        raise BadValue(f"IMAGE_VERSION={tag!r}: not a supported image; allowed: {', '.join(images['images'])}")
    base = environ.get("BASE_IMAGE", "").strip() or f"{images['registry_image']}:{tag}{images['hardware'][hardware]}"
    return {"BASE_IMAGE": base, "IMAGE_VERSION": tag}


def main(environ: Mapping[str, str]) -> int:
    try:
        args = build_args(environ, checkout_env_file())
    except BadValue as bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    print(" ".join(f"export {name}={shlex.quote(value)};" for name, value in args.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
