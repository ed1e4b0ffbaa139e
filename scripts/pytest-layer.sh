#!/usr/bin/env bash
# Run one test layer (tests/<layer>); a layer that collects no test is a failure.
set -uo pipefail
layer=$1; shift
.venv/bin/python -m pytest "tests/$layer" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: tests/$layer collected no tests (pytest exit 5)" >&2
fi
exit "$rc"
