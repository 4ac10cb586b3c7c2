#!/usr/bin/env bash
# The generated-client test: a fresh server (scripts/with-server.sh), a Python client
# generated from its /openapi.json with openapi-python-client (pinned in
# scripts/py-requirements.txt; ./.venv), and a whole flow through that client
# (scripts/client_flow.py). Generation warnings fail the test: an operation or a schema
# the generator had to drop is a broken document.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/venv.sh)

flow() {
  local work
  work=$(mktemp -d -t shop-client.XXXXXX)
  trap 'rm -rf "$work"' RETURN
  python3 -c 'import sys, urllib.request as r; open(sys.argv[2], "wb").write(r.urlopen(sys.argv[1] + "/openapi.json").read())' \
    "$SHOP_URL" "$work/openapi.json"
  # ruff (an openapi-python-client dependency) formats the generated code.
  if ! PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
      --path "$work/openapi.json" --output-path "$work/shop_client" --meta none \
      --fail-on-warning >"$work/generate.log" 2>&1; then
    cat "$work/generate.log" >&2
    echo "client flow: openapi-python-client could not generate a complete client" >&2
    return 1
  fi
  PYTHONPATH="$work" "$venv/bin/python" scripts/client_flow.py shop_client "$work/openapi.json"
}
export -f flow
export venv
scripts/with-server.sh bash -c 'set -euo pipefail; flow'
