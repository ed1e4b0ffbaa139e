#!/usr/bin/env bash
# Run one test layer (tests/<layer>); a layer that collects no test is a failure.
# Each run leaves its JUnit XML in .run/junit/<layer>.xml (bench/reliability.py reads it).
set -uo pipefail
layer=$1; shift
mkdir -p .run/junit
.venv/bin/python -m pytest "tests/$layer" --junitxml=".run/junit/$layer.xml" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: tests/$layer collected no tests (pytest exit 5)" >&2
fi
exit "$rc"
