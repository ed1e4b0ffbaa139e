#!/usr/bin/env bash
# The CPU image's override folder in the build context (DIR, bind-mounted as /wheels).
# By default it stays empty and the image takes torch's +cpu build from TORCH_INDEX_URL
# (PyTorch's CPU wheel index). With TORCH_FIND_LINKS (a folder or page holding that
# wheel, e.g. the test bed's pip find-links folder) the wheel is copied in and the build
# asks no index for torch.
set -euo pipefail
dir=${1:?usage: cpu-wheels.sh DIR}
lock=$(dirname "$0")/../requirements/lock-runtime-$(uname -m).txt
[ -f "$lock" ] || { echo "error: no runtime lock for $(uname -m); allowed machines: x86_64, aarch64" >&2; exit 2; }
torch=$(grep -E '^torch==' "$lock")
mkdir -p "$dir"
# A wheel left from an earlier override would outrank the setting now in force.
rm -f "$dir"/torch-*.whl
if [ -n "${TORCH_FIND_LINKS:-}" ] && [[ $torch == *+* ]]; then
  python3 -m pip download --quiet --no-deps --only-binary :all: --no-index --find-links "$TORCH_FIND_LINKS" \
    --dest "$dir" "$torch"
fi
