# shellcheck shell=bash
# Where the bundle keeps things on this machine, in one place: sourced by the scripts, and
# read by the Makefile and by Python (testbed/paths.py, scripts/ensure-base-images.py).

# The cross-run cache: the venv, the fixture weights, the Docker data-root, vLLM's compile
# cache. Override it with BUNDLE_CACHE; keep it short (the Docker engine's socket lives there).
: "${BUNDLE_CACHE:=$HOME/.cache/ascend-serve-bundle}"
export BUNDLE_CACHE

# The native server's run folder in the checkout (`make up` without Docker): its state
# folder (STATE_DIR), log and pid.
# shellcheck disable=SC2034  # read by the scripts that source this file
NATIVE_RUN=.run
# shellcheck disable=SC2034
NATIVE_STATE_DIR=$NATIVE_RUN/state
