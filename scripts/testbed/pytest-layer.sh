#!/usr/bin/env bash
# Run one test layer (tests/<layer>); a layer that collects no test is a failure.
# Each run leaves its JUnit XML in .run/junit/<layer>.xml (bench/reliability.py reads it).
# LAYER_VLLM picks the Python it runs on (`make test-integration TEST_VLLM=...`): `venv` (the project venv's vLLM, the newest) or
# `guide` (the guide's vLLM 0.18.0 in a venv built as the accelerator image is,
# scripts/testbed/engine-venv.sh; the fixture weights come from the project venv's builder).
set -uo pipefail
layer=$1; shift
mkdir -p .run/junit
python=.venv/bin/python
case ${LAYER_VLLM:-venv} in
  venv) ;;
  guide)
    engine=$(scripts/testbed/engine-venv.sh) || exit 1
    python=$(sed -n 1p <<<"$engine")
    # vLLM 0.18's CPU worker refuses to start without tcmalloc and Intel OpenMP preloaded.
    LD_PRELOAD=$(sed -n 2p <<<"$engine")
    FIXTURE_WEIGHTS=$(.venv/bin/python scripts/testbed/build_fixture_model.py --print-path 2>/dev/null) || exit 1
    export LD_PRELOAD FIXTURE_WEIGHTS
    ;;
  *)
    echo "error: TEST_VLLM=$LAYER_VLLM is not a test engine; allowed: guide or venv" >&2
    exit 2
    ;;
esac
"$python" -m pytest "tests/$layer" --junitxml=".run/junit/$layer.xml" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: tests/$layer collected no tests (pytest exit 5)" >&2
fi
exit "$rc"
