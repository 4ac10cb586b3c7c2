#!/usr/bin/env bash
# Runs a command against a freshly built shop server on a throwaway database:
#
#   scripts/with-server.sh COMMAND [ARGS...]
#
# builds `shop-server` (SERVER_PROFILE=debug|release, default debug; SHOP_SERVER_BIN=path
# runs that binary instead), creates an empty
# database next to DATABASE_URL's (default: the project-local PostgreSQL, which must be
# up: `make db-up`), starts the server on a free loopback port with ADMIN_TOKEN and the
# demo catalogue, waits until it is ready, runs COMMAND with SHOP_URL and ADMIN_TOKEN in
# its environment, then stops the server, drops the database and exits with COMMAND's
# status. The server's log is shown when COMMAND fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
profile="${SERVER_PROFILE:-debug}"
base_url="${DATABASE_URL:-$("$root/scripts/db.sh" url)}"
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"

psql_bin() {
  if command -v psql >/dev/null 2>&1; then command -v psql; return; fi
  local p
  p=$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$p" ] || { echo "with-server: psql not found" >&2; exit 1; }
  echo "$p"
}
psql=$(psql_bin)

if [ -n "${SHOP_SERVER_BIN:-}" ]; then
  bin="$SHOP_SERVER_BIN"
else
  case "$profile" in
    release) cargo build -q --release --bin shop-server ;;
    debug) cargo build -q --bin shop-server ;;
    *) echo "with-server: SERVER_PROFILE must be debug or release" >&2; exit 2 ;;
  esac
  bin="${CARGO_TARGET_DIR:-$root/target}/$profile/shop-server"
fi

# The throwaway database: same server, user and options, another name.
db="shop_throwaway_$$_${RANDOM}"
db_url=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$base_url" "$db")
"$psql" "$base_url" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t shop-server.XXXXXX.log)
server_pid=""

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  "$psql" "$base_url" -qAtX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATABASE_URL="$db_url" BIND_ADDR="127.0.0.1:$port" SEED_DEMO_DATA=true \
  SHUTDOWN_TIMEOUT_SECS=5 RUST_LOG="${RUST_LOG:-warn}" "$bin" >"$log" 2>&1 &
server_pid=$!

export SHOP_URL="http://127.0.0.1:$port"
ready=""
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  if python3 -c 'import sys, urllib.request as r; r.urlopen(sys.argv[1] + "/health/ready", timeout=1)' "$SHOP_URL" 2>/dev/null; then
    ready=yes
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "with-server: the server did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
fi

status=0
"$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "with-server: '$*' failed ($status); the server's log (last 50 lines):" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
