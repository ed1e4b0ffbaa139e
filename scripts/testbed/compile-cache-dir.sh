#!/usr/bin/env bash
# The test bed's host folder for vLLM's compile cache (compose/testbed-compile-cache.yaml):
# made if missing and handed to the image's user, so the hardened `serve` can write it: uid
# 1000 in the CPU image, root in the accelerator images (which, without CAP_DAC_OVERRIDE,
# cannot write a folder it does not own either).
#   scripts/testbed/compile-cache-dir.sh DIR [UID]
set -euo pipefail
dir=${1:?usage: compile-cache-dir.sh DIR [UID]}
owner=${2:-1000}
mkdir -p "$dir"
if [ "$(stat -c %u "$dir")" != "$owner" ] && ! chown "$owner:$owner" "$dir" 2>/dev/null; then
  echo "error: TESTBED_COMPILE_CACHE=$dir is owned by uid $(stat -c %u "$dir"), which the image's user cannot" \
    "write; allowed: a folder owned by uid $owner (sudo chown $owner:$owner $dir)" >&2
  exit 2
fi
