#!/usr/bin/env bash
# Put the torch +cpu wheel the CPU image needs into the build context (DIR).
# pip finds it where pip is configured to look (this machine: its find-links folder;
# elsewhere set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
set -euo pipefail
dir=${1:?usage: cpu-wheels.sh DIR}
torch=$(grep -E '^torch==' "$(dirname "$0")/../requirements/lock-runtime.txt")
mkdir -p "$dir"
if ! ls "$dir"/torch-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$dir" "$torch"
fi
