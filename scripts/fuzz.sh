#!/usr/bin/env bash
# `make fuzz`: schemathesis runs every check (`--checks all`) of the served OpenAPI
# document against a freshly built server on a throwaway database (scripts/with-server.sh),
# with the admin token, so that admin routes are exercised too. Any failure fails the run.
#
#   FUZZ_MAX_EXAMPLES   cases per operation and phase (default 100)
#   FUZZ_MAX_TIME       a time budget in seconds for the whole run (unset: none)
#   FUZZ_SEED           a seed, to repeat a run
#   FUZZ_ARGS           anything else for `schemathesis run`
#
# Reports (JUnit, NDJSON) go to target/fuzz/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/venv.sh)
mkdir -p target/fuzz

run() {
  local args=(
    run "$SHOP_URL/openapi.json"
    --checks all
    --header "Authorization: Bearer $ADMIN_TOKEN"
    --max-examples "${FUZZ_MAX_EXAMPLES:-100}"
    --workers 1
    --request-timeout 10
    --output-truncate true
    --warnings off
    --report junit,ndjson --report-dir target/fuzz
  )
  if [ -n "${FUZZ_MAX_TIME:-}" ]; then args+=(--max-time "$FUZZ_MAX_TIME"); fi
  if [ -n "${FUZZ_SEED:-}" ]; then args+=(--seed "$FUZZ_SEED"); fi
  # shellcheck disable=SC2206
  args+=(${FUZZ_ARGS:-})
  SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH="$root/scripts" \
    "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" "${args[@]}"
}
export -f run
export venv root
scripts/with-server.sh bash -c 'set -euo pipefail; run'
