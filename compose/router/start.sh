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

set -- --host 0.0.0.0 --port 8000 --policy "$policy" \
  --health-check-endpoint /health --health-check-interval-secs "$interval" --health-failure-threshold 2 \
  --retry-max-retries 3 --prometheus-host 0.0.0.0 --prometheus-port 29000 --worker-urls
i=1
while [ "$i" -le "$replicas" ]; do
  set -- "$@" "http://$project-serve-$i:8000"
  i=$((i + 1))
done
# The key from the Compose secret file: the router forwards it to the replicas.
if [ -n "${API_KEY_FILE:-}" ]; then
  [ -r "$API_KEY_FILE" ] || fail "API_KEY_FILE=$API_KEY_FILE is not allowed: a file readable by uid $(id -u)"
  set -- "$@" --api-key "$(tr -d '\r\n' < "$API_KEY_FILE")"
fi
exec vllm-router "$@"
