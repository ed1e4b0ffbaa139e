#!/usr/bin/env bash
# The test bed's host folder for vLLM's compile cache (compose/testbed-compile-cache.yaml):
# made if missing and handed to the CPU image's uid 1000, so the hardened `serve` can write
# it (the accelerator images run as root, which writes it either way).
#   scripts/testbed/compile-cache-dir.sh DIR
set -euo pipefail
dir=${1:?usage: compile-cache-dir.sh DIR}
owner=1000
mkdir -p "$dir"
if [ "$(stat -c %u "$dir")" != "$owner" ] && ! chown "$owner:$owner" "$dir" 2>/dev/null; then
  echo "error: TESTBED_COMPILE_CACHE=$dir is owned by uid $(stat -c %u "$dir"), which the image's user cannot" \
    "write; allowed: a folder owned by uid $owner (sudo chown $owner:$owner $dir)" >&2
  exit 2
fi
