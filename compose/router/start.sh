#!/bin/sh
# Starts vllm-router in front of the Compose project's `serve` replicas, which Compose
# names <project>-serve-1..N on the project network. Bad settings: one line, exit 2.
set -eu

fail() { echo "router: $1" >&2; exit 2; }

replicas=${REPLICAS:-1}
policy=${ROUTER_POLICY:-cache_aware}
project=${ROUTER_PROJECT:?ROUTER_PROJECT must name the Compose project}
interval=${ROUTER_HEALTH_INTERVAL:-5}

case $replicas in
  '' | *[!0-9]* | 0*) fail "REPLICAS=$replicas is not allowed: a whole number of serve replicas, 1 or more" ;;
esac
case $policy in
  random | round_robin | cache_aware | power_of_two) ;;
  *) fail "ROUTER_POLICY=$policy is not allowed: one of random, round_robin, cache_aware, power_of_two" ;;
esac
case $interval in
  '' | *[!0-9]* | 0*) fail "ROUTER_HEALTH_INTERVAL=$interval is not allowed: whole seconds, 1 or more" ;;
esac
# Admission control at the router (vllm-router's own): unset leaves the router's defaults.
whole() {  # NAME VALUE MIN: VALUE is unset or a whole number >= MIN
  case $2 in
    '') return 0 ;;
    *[!0-9]* | 0?*) fail "$1=$2 is not allowed: a whole number, $3 or more" ;;
  esac
  [ "$2" -ge "$3" ] || fail "$1=$2 is not allowed: a whole number, $3 or more"
}
whole ROUTER_MAX_CONCURRENT "${ROUTER_MAX_CONCURRENT:-}" 1
whole ROUTER_QUEUE_SIZE "${ROUTER_QUEUE_SIZE:-}" 0
whole ROUTER_QUEUE_TIMEOUT "${ROUTER_QUEUE_TIMEOUT:-}" 1

set -- --host 0.0.0.0 --port 8000 --policy "$policy" \
  --health-check-endpoint /health --health-check-interval-secs "$interval" --health-failure-threshold 2 \
  --retry-max-retries 3 --prometheus-host 0.0.0.0 --prometheus-port 29000 --worker-urls
i=1
while [ "$i" -le "$replicas" ]; do
  set -- "$@" "http://$project-serve-$i:8000"
  i=$((i + 1))
done
[ -z "${ROUTER_MAX_CONCURRENT:-}" ] || set -- "$@" --max-concurrent-requests "$ROUTER_MAX_CONCURRENT"
[ -z "${ROUTER_QUEUE_SIZE:-}" ] || set -- "$@" --queue-size "$ROUTER_QUEUE_SIZE"
[ -z "${ROUTER_QUEUE_TIMEOUT:-}" ] || set -- "$@" --queue-timeout-secs "$ROUTER_QUEUE_TIMEOUT"
# The key from the Compose secret file (its first key; blank lines and # comments skipped): the
# router sends it on its own calls to the replicas. Clients' keys pass through as they are.
if [ -n "${API_KEY_FILE:-}" ]; then
  [ -r "$API_KEY_FILE" ] || fail "API_KEY_FILE=$API_KEY_FILE is not allowed: a file readable by uid $(id -u)"
  key=$(tr -d '\r' < "$API_KEY_FILE" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' | grep -v -e '^$' -e '^#' | head -n 1)
  [ -n "$key" ] || fail "API_KEY_FILE=$API_KEY_FILE is not allowed: a file with one key per line (it holds none)"
  set -- "$@" --api-key "$key"
fi
exec vllm-router "$@"
