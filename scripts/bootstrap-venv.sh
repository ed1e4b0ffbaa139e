#!/usr/bin/env bash
# Make the project venv (vLLM CPU build + bundle + dev tools) and link it as .venv.
#
# The venv is slow to build (~3.6 GB), so it lives in a cache folder keyed by its
# inputs (the requirement files and the Python version): a later run, in any checkout
# on this machine, reuses it; a change of inputs builds a new one.
# Usage: scripts/bootstrap-venv.sh [link-path]   (default link: .venv)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
link=${1:-$root/.venv}
python=${PYTHON:-python3}
. "$root/scripts/paths.sh"
cache=$BUNDLE_CACHE
# The runtime lock of this machine's architecture; torch's +cpu build comes from
# TORCH_INDEX_URL or TORCH_FIND_LINKS (scripts/install-lock.sh).
lock=$root/requirements/lock-runtime-$(uname -m).txt
if [ ! -f "$lock" ]; then
  echo "error: no runtime lock for $(uname -m); allowed machines: x86_64, aarch64" >&2
  exit 2
fi
key=$( (cat "$lock" "$root/requirements/lock-dev.txt"; "$python" -c 'import sys; print(sys.version)') \
  | sha256sum | cut -c1-16)
venv=$cache/venv-$key

mkdir -p "$cache"
# Two makes at once (say `make lint` and `make test`) must not build the same venv twice.
exec 9>"$cache/.venv-$key.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: building $venv (vLLM CPU, about 2 minutes)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # (pip's notes about this machine's empty extra indexes are filtered out.)
  "$root/scripts/install-lock.sh" "$venv/bin/python" "$lock" "$root/requirements/lock-dev.txt" \
    2> >(grep -v 'is ignored' >&2)
  (cd "$root" && "$venv/bin/python" -c 'import vllm, modelscope, entrypoint.settings')  # self-test
  touch "$venv/.complete"
  # Each venv is ~4 GB: keep this one and the one before it (another checkout may use it).
  find "$cache" -maxdepth 1 -name 'venv-*' -type d -printf '%T@ %p\n' | sort -rn | tail -n +3 \
    | cut -d' ' -f2- | xargs -r rm -rf
fi
ln -sfn "$venv" "$link"
echo "$venv"
