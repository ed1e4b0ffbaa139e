#!/usr/bin/env bash
# A Debian base image without a registry: debootstrap a minbase rootfs from this
# machine's apt mirror and `docker import` it under the name the Dockerfile expects.
#   scripts/testbed/base-image.sh debian:bookworm-slim
# Skips an image that already exists (a pulled one too); rebuilds one this script made
# from other inputs. The rootfs tarball is cached under $BUNDLE_CACHE/base-images, keyed
# by its inputs, so a wiped docker data-root costs only the import.
# Overrides: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (empty: none), DEBIAN_SUITE (bookworm),
# DEBIAN_ARCH (Debian's name, e.g. arm64; default this machine's): a foreign one runs under
# qemu-user-static (scripts/testbed/emulation.sh) and is imported through a Compose build,
# since `docker import --platform` does not set the architecture on dockerd 20.10.
# Needs an engine: run `eval "$(scripts/testbed/docker-engine.sh start)"` first (done here if unset).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

variant=minbase
suite=${DEBIAN_SUITE:-bookworm}
native_arch=$(dpkg --print-architecture)
arch=${DEBIAN_ARCH:-$native_arch}
# shellcheck source=scripts/paths.sh
. "$here/../paths.sh"
cache=$BUNDLE_CACHE/base-images
label=ascend-serve-bundle.base-key
ca_bundle=/etc/ssl/certs/ca-certificates.crt

say() { echo "base-image: $*" >&2; }
die() { say "error: $*"; exit 1; }

# "URI SUITE" for every enabled deb source of this machine, from both the one-line
# (*.list) and the deb822 (*.sources) formats.
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -E 's/#.*//; s/\[[^]]*\]//' "$f" | awk '$1 == "deb" { print $2, $3 }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas split by blank lines; Types, URIs, Suites and Enabled fields.
    awk '
      function flush(   u, s, nu, ns, i, j) {
        if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
          nu = split(uris, u, " "); ns = split(suites, s, " ")
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
        }
        types = uris = suites = enabled = ""
      }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
      key == "types:" { types = $0 } key == "uris:" { uris = $0 }
      key == "suites:" { suites = $0 } key == "enabled:" { enabled = $0 }
      END { flush() }
    ' "$f"
  done
}

# First enabled source that serves the given suite, without a trailing slash.
mirror_for() {
  apt_sources | awk -v s="$1" '$2 == s { sub(/\/$/, "", $1); print $1; exit }'
}

ensure_tools() {
  command -v debootstrap >/dev/null && return 0
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
}

# Use the engine from docker-engine.sh when none is configured for this shell.
ensure_engine() {
  timeout 10 docker info >/dev/null 2>&1 && return 0
  eval "$("$here/docker-engine.sh" env)"
  timeout 10 docker info >/dev/null 2>&1 ||
    die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-}); run: eval \"\$(scripts/testbed/docker-engine.sh start)\""
}

# apt sources inside the image: the same mirrors as this machine, in the layout of
# Debian's official images (deb822 debian.sources, no sources.list).
write_sources() {
  local root=$1
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$mirror" "$suite" "$suite"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security_mirror" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security_mirror" "$suite"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
}

# An https mirror needs CA certificates in the image; this machine's bundle is added
# too, for a TLS-inspecting proxy whose CA only this machine trusts.
add_host_ca() {
  local root=$1
  install -D -m 0644 "$ca_bundle" "$root/usr/local/share/ca-certificates/host-bundle.crt"
  chroot "$root" update-ca-certificates >/dev/null
}

# Keep the image small and its apt state like a fresh slim image's.
trim_rootfs() {
  local root=$1
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/* "$root"/var/tmp/*
}

# Unmount whatever a failed debootstrap left mounted (proc, sys), then delete.
remove_rootfs() {
  local root=$1 mnt
  [ -d "$root" ] || return 0
  awk -v r="$root" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r mnt; do umount -l "$mnt" || true; done
  rm -rf --one-file-system "$root"
}

build_tarball() {
  local tarball=$1 root
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $root is local
  trap "remove_rootfs '$root'; rm -f '$tarball.tmp'" EXIT
  local include=()
  [[ $mirror == https:* ]] && include=(--include=ca-certificates)
  say "debootstrap --variant=$variant $suite from $mirror"
  local t0=$SECONDS
  [ "$arch" = "$native_arch" ] || { "$here/emulation.sh" "$arch"; include+=(--arch="$arch"); }
  debootstrap --variant="$variant" "${include[@]}" "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  say "debootstrap took $((SECONDS - t0))s"
  write_sources "$root"
  [[ $mirror == https:* || $security_mirror == https:* ]] && add_host_ca "$root"
  trim_rootfs "$root"
  # --numeric-owner: ids as in the rootfs, not mapped through this machine's names.
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  remove_rootfs "$root"
  trap - EXIT
}

# A Compose build of `FROM scratch` + the rootfs for linux/$arch: the one way this engine
# records a foreign architecture in the image (the docker CLI here has no buildx).
import_foreign() {
  local tarball=$1 name=$2 key=$3 ctx
  ctx=$(mktemp -d "$cache/import.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $ctx is local
  trap "rm -rf '$ctx'" EXIT
  ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nLABEL %s=%s\nCMD ["bash"]\n' "$label" "$key" >"$ctx/Dockerfile"
  printf 'services:\n  rootfs:\n    image: %s\n    platform: linux/%s\n    build:\n      context: .\n      platforms: [linux/%s]\n' \
    "$name" "$arch" "$arch" >"$ctx/compose.yaml"
  COMPOSE_BAKE=false docker compose --project-directory "$ctx" -p "base-import-$$" build >&2
  rm -rf "$ctx"
  trap - EXIT
}

main() {
  local name=${1:-}
  [ -n "$name" ] || { echo "usage: $0 IMAGE_NAME (e.g. debian:bookworm-slim)" >&2; exit 2; }
  mirror=${DEBIAN_MIRROR:-$(mirror_for "$suite")}
  [ -n "$mirror" ] || die "no apt source for $suite on this machine; set DEBIAN_MIRROR"
  security_mirror=${DEBIAN_SECURITY_MIRROR-$(mirror_for "$suite-security")}
  # The key covers every input of the rootfs: mirrors, suite, variant, this script,
  # and this machine's CA bundle when it goes into the image.
  local key
  key=$({
    printf '%s\n' "$mirror" "$security_mirror" "$suite" "$variant" "$(uname -m)"
    [ "$arch" = "$native_arch" ] || echo "$arch"
    cat "${BASH_SOURCE[0]}"
    if [[ $mirror == https:* || $security_mirror == https:* ]]; then cat "$ca_bundle"; fi
  } | sha256sum | cut -c1-16)

  ensure_engine
  if docker image inspect "$name" >/dev/null 2>&1; then
    local have
    have=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$name" 2>/dev/null || true)
    if [ -z "$have" ] || [ "$have" = "$key" ]; then
      say "$name exists${have:+ (key $have)}; skipping"
      return 0
    fi
    say "$name was made from other inputs (key $have, now $key); rebuilding"
  fi

  mkdir -p "$cache"
  local tarball
  tarball=$cache/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_')-$key.tar
  if [ -f "$tarball" ]; then
    say "using cached rootfs $tarball"
  else
    ensure_tools
    build_tarball "$tarball"
    # Tarballs of this name from older inputs are dead weight now.
    local old
    for old in "${tarball%-*}"-????????????????.tar; do
      [ "$old" = "$tarball" ] || [ ! -f "$old" ] || { say "removing stale $old"; rm -f "$old"; }
    done
  fi
  say "importing $tarball as $name ($arch)"
  local t0=$SECONDS
  # Metadata as in Debian's official image (CMD bash), plus the key to detect staleness.
  if [ "$arch" = "$native_arch" ]; then
    docker import -c 'CMD ["bash"]' -c "LABEL $label=$key" "$tarball" "$name" >&2
  else
    import_foreign "$tarball" "$name" "$key"
  fi
  say "import took $((SECONDS - t0))s"
}

main "$@"
