#!/usr/bin/env bash
# `make up/down/logs` without Docker: the supervisor from the project venv, in the
# background, with its state, log and pid under .run/.
#   scripts/native.sh up|down|logs
# On a machine that cannot reach the hub, the test-bed Gemma 3 270M weights are the
# fallback (the supervisor says so loudly).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/paths.sh
run=$NATIVE_RUN
state=$NATIVE_STATE_DIR
log=$run/serve.log
pidfile=$run/serve.pid
py=.venv/bin/python
env_file=()
env=${ENV_FILE-.env}
[ -n "$env" ] && [ -f "$env" ] && env_file=(--env-file "$env")

# The pid file holds the supervisor's pid and its start time (field 22 of /proc/PID/stat): a pid
# the kernel has since given to another process does not match, so that process is never signalled.
started_at() { awk '{sub(/.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null; }
recorded_pid() {
  local pid start
  [ -f "$pidfile" ] || return 1
  read -r pid start <"$pidfile" 2>/dev/null || true
  if [[ "$pid" =~ ^[0-9]{1,9}$ ]] && [ -n "$start" ] && [ "$(started_at "$pid")" = "$start" ]; then
    echo "$pid"
    return 0
  fi
  if [[ ! "$pid" =~ ^[0-9]{1,9}$ ]] || [ -e "/proc/$pid" ]; then
    echo "$pidfile names no server this checkout started (stale or edited); removed it, signalled nothing" >&2
  else
    echo "the server (pid $pid) is no longer running; removed $pidfile" >&2
  fi
  rm -f "$pidfile"
  return 1
}
running() { recorded_pid >/dev/null; }

up() {
  if running; then echo "already running (pid $(recorded_pid)); make down first"; return 0; fi
  mkdir -p "$run"
  local fallback
  fallback=$("$py" scripts/testbed/build_fixture_model.py | tail -n 1)
  # Check every setting before going to the background, so a mistake is one line here.
  STATE_DIR=$state FALLBACK_MODEL_DIR=$fallback "$py" -m entrypoint "${env_file[@]}" settings >/dev/null
  STATE_DIR=$state FALLBACK_MODEL_DIR=$fallback nohup "$py" -m entrypoint "${env_file[@]}" serve >"$log" 2>&1 &
  echo "$! $(started_at $!)" >"$pidfile"
  echo "starting (pid $!, log $log); waiting until healthy, a first start takes minutes..."
  STATE_DIR=$state "$py" -m entrypoint "${env_file[@]}" watch --pid "$!" || true
  until "$py" -m healthcheck startup --state-dir "$state" >/dev/null; do
    if ! running; then
      echo "server exited before it was ready; last lines of $log:" >&2
      tail -n 25 "$log" >&2
      rm -f "$pidfile"
      return 1
    fi
    sleep 2
  done
  grep -F 'SERVING FALLBACK' "$log" || true
  local url
  url=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$state/ready")
  echo "healthy: $url  (try: make smoke; curl $url/v1/models; stop: make down)"
}

down() {
  local pid
  if [ ! -f "$pidfile" ]; then echo "not running"; return 0; fi
  pid=$(recorded_pid) || return 0
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 1; done
  rm -f "$pidfile"
  echo "stopped"
}

logs() { tail -n 100 -f "$log"; }

"${1:?usage: native.sh up|down|logs}"
