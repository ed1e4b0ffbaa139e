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
key=$( (cat "$root"/requirements/*.txt; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
venv=$cache/venv-$key

mkdir -p "$cache"
# Two makes at once (say `make lint` and `make test`) must not build the same venv twice.
exec 9>"$cache/.venv-$key.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: building $venv (vLLM CPU, about 2 minutes)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # The locks are complete (a pip freeze), so --no-deps installs exactly them and skips
  # the CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`.
  # (pip's notes about this machine's empty extra indexes are filtered out.)
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    -r "$root/requirements/lock-runtime.txt" -r "$root/requirements/lock-dev.txt" \
    2> >(grep -v 'is ignored' >&2)
  (cd "$root" && "$venv/bin/python" -c 'import vllm, modelscope, entrypoint.settings')  # self-test
  touch "$venv/.complete"
  # Each venv is ~4 GB: keep this one and the one before it (another checkout may use it).
  find "$cache" -maxdepth 1 -name 'venv-*' -type d -printf '%T@ %p\n' | sort -rn | tail -n +3 \
    | cut -d' ' -f2- | xargs -r rm -rf
fi
ln -sfn "$venv" "$link"
echo "$venv"
