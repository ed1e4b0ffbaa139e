#!/usr/bin/env bash
# Write the checkout root's compose.yaml for the deployment the Makefile addresses, so the
# plain commands typed at the root (`docker compose run --rm smoke`, `ps`, `logs`, `down`)
# reach the same project with the same files and values as `make up`; a service whose
# configuration differed would be recreated by `docker compose run`.
#   scripts/compose-root.sh PROJECT FILE...
# The Compose variables the Makefile sets (HOST_PORT, FIXTURE_WEIGHTS, ...) are taken from
# the environment into .run/compose.env, which the root file names for interpolation.
set -euo pipefail
cd "$(dirname "$0")/.."
project=${1:?usage: compose-root.sh PROJECT FILE...}
shift
mkdir -p .run
for var in ENV_FILE HOST_PORT HOST_BIND HOST_UID HOST_GID FIXTURE_WEIGHTS TESTBED_COMPILE_CACHE RESULTS_DIR API_KEY_FILE \
  MODELSCOPE_TOKEN_FILE IMAGE IMAGE_TAG BUILD_TARGET SHM_SIZE NPU_DEVICE BASE_IMAGE IMAGE_VERSION CA_BUNDLE REPLICAS \
  ROUTER_POLICY ROUTER_HEALTH_INTERVAL ROUTER_PROJECT WARM_IMAGE METRICS_KEY_FILE ROUTER_MAX_CONCURRENT \
  ROUTER_QUEUE_SIZE ROUTER_QUEUE_TIMEOUT; do
  if [ -n "${!var:-}" ]; then printf '%s=%s\n' "$var" "${!var}"; fi
done >.run/compose.env
{
  echo "# Written by make (up, down, logs, smoke...) for PLATFORM and its options; not in git."
  echo "# It lets plain \`docker compose ...\` at the checkout root address the same deployment."
  echo "name: $project"
  echo "include:"
  echo "  - path:"
  for file in "$@"; do echo "      - $file"; done
  echo "    env_file: .run/compose.env"
} >compose.yaml
