"""Make sure the base images a build needs are on this machine, or stop with one line.

    docker compose ... config --format json | python3 scripts/ensure-base-images.py PLATFORM

Reads the build arguments Compose will pass (stdin) over the Dockerfile's defaults, and
for each base image of the chosen runtime: present -> done; with TESTBED=1 the Debian base
without a mirror -> built locally (scripts/testbed/base-image.sh, from this machine's apt
mirror, no registry); otherwise `docker pull`. When that fails too it prints one line naming the
image and the setting to change, instead of BuildKit's error wall, and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The base images each runtime stage is built from; the `tini` stage is on CPU_BASE_IMAGE.
NEEDS = {"accelerator": ("BASE_IMAGE", "CPU_BASE_IMAGE"), "cpu": ("CPU_BASE_IMAGE",)}
# The setting an operator changes for each build argument, per platform.
SETTING = {"BASE_IMAGE": {"cuda": "CUDA_BASE_IMAGE"}}
MIRROR_EXAMPLE = "m.daocloud.io/"


def dockerfile_defaults(path: Path) -> dict[str, str]:
    """The global `ARG NAME=value` lines before the first FROM."""
    defaults = {}
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            break
        match = re.match(r"ARG\s+(\w+)=(\S*)", line)
        if match:
            defaults[match.group(1)] = match.group(2)
    return defaults


def build_args(compose: dict) -> dict[str, str]:
    build = compose["services"]["serve"].get("build", {})
    args = dockerfile_defaults(Path(build.get("context", ROOT)) / build.get("dockerfile", "Dockerfile"))
    args.update({name: value for name, value in (build.get("args") or {}).items() if value is not None})
    return args


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def bundle_cache() -> Path:
    """The cross-run cache root, as scripts/paths.sh (its one definition) gives it."""
    done = subprocess.run(["bash", "-c", '. scripts/paths.sh && printf %s "$BUNDLE_CACHE"'], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return Path(done.stdout)


def build_debian_locally(ref: str) -> bool:
    log = bundle_cache() / "base-image.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"base images: building {ref} from this machine's apt mirror (log: {log})", file=sys.stderr)
    with log.open("w") as out:
        built = subprocess.run([str(ROOT / "scripts/testbed/base-image.sh"), ref], stdout=out, stderr=out)
    return built.returncode == 0


def first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def ensure(ref: str, setting: str, is_debian: bool, mirror: str) -> str | None:
    """None when REF is here afterwards, else the one line to print."""
    if docker("image", "inspect", ref).returncode == 0:
        return None
    if is_debian and not mirror and os.environ.get("TESTBED") == "1" and build_debian_locally(ref):
        return None
    print(f"base images: pulling {ref}", file=sys.stderr)
    pulled = docker("pull", "--quiet", ref)
    if pulled.returncode == 0:
        return None
    hint = (f"check REGISTRY_MIRROR={mirror}" if mirror
            else f"set REGISTRY_MIRROR to a registry mirror prefix (e.g. {MIRROR_EXAMPLE})")
    return (f"base image {ref} is not on this machine and cannot be pulled ({first_error(pulled.stderr)}): "
            f"{hint}, or {setting} to an image this machine has")


def main(platform: str) -> int:
    try:
        compose = json.load(sys.stdin)
    except ValueError:  # `docker compose config` failed and said why on its own stderr
        return 1
    args = build_args(compose)
    mirror = args.get("REGISTRY_MIRROR", "")
    for name in NEEDS[args.get("RUNTIME", "accelerator")]:
        setting = SETTING.get(name, {}).get(platform, name)
        line = ensure(mirror + args[name], setting, name == "CPU_BASE_IMAGE", mirror)
        if line:
            print(line, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} PLATFORM  (compose config --format json on stdin)")
    sys.exit(main(sys.argv[1]))
