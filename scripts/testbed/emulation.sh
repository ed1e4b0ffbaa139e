#!/usr/bin/env bash
# Run another architecture's binaries on this machine: Debian's qemu-user-static through
# binfmt_misc, registered with the F flag so containers use it too (docs: testbed notes, arm64).
#   scripts/testbed/emulation.sh arm64   (Debian's architecture name)
set -euo pipefail
arch=${1:?usage: emulation.sh DEBIAN_ARCH (e.g. arm64)}
case $arch in
  arm64) qemu=aarch64 ;;
  *) echo "emulation: error: DEBIAN_ARCH=$arch is not emulated here; allowed: arm64" >&2; exit 2 ;;
esac
if ! command -v "qemu-$qemu-static" >/dev/null || ! command -v update-binfmts >/dev/null; then
  echo "emulation: installing qemu-user-static and binfmt-support" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support >&2
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -f "/proc/sys/fs/binfmt_misc/qemu-$qemu" ] || update-binfmts --enable "qemu-$qemu" >&2
grep -q '^enabled' "/proc/sys/fs/binfmt_misc/qemu-$qemu" || update-binfmts --enable "qemu-$qemu" >&2
