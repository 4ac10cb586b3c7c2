#!/usr/bin/env bash
# Run a project-local NATS server with JetStream for the tests (and for trying the JetStream
# data-platform adapter by hand).
#
#   scripts/nats.sh up     install Debian's nats-server when missing, start it (idempotent)
#   scripts/nats.sh up --fresh   the same, emptying its JetStream store first when it is not
#                          running (what `make test` does: streams left by earlier runs, each
#                          reserving its maximum size, never fill the server's storage)
#   scripts/nats.sh url    print its NATS_URL and nothing else
#   scripts/nats.sh down   stop it
#   scripts/nats.sh status exit 0 when it runs
#   scripts/nats.sh bin    print the nats-server binary (installing it when missing); the
#                          tests that stop and restart a server of their own run it
#
# The port is the project's own (NATS_PORT_LOCAL, default 14222) so it never collides with a
# system server; JetStream stores its streams under ./.natsdata, with the pid file and log.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.natsdata"
port="${NATS_PORT_LOCAL:-14222}"
url="nats://127.0.0.1:${port}"
pid_file="$data/nats-server.pid"

find_bin() {
  if command -v nats-server >/dev/null 2>&1; then
    command -v nats-server
    return
  fi
  if [ -x /usr/sbin/nats-server ]; then
    echo /usr/sbin/nats-server
    return
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "nats: installing nats-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server >/dev/null; }
    command -v nats-server || echo /usr/sbin/nats-server
    return
  fi
  cat >&2 <<'MSG'
nats-server not found. Install it, e.g. on Debian/Ubuntu:  sudo apt-get install -y nats-server
or set NATS_URL to a NATS server (>= 2.9) with JetStream you already run.
MSG
  exit 1
}

running() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

# Whether the port accepts connections (bash's /dev/tcp; no extra tool needed).
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
}

cmd_up() {
  local bin
  bin=$(find_bin)
  mkdir -p "$data"
  if running; then
    return
  fi
  if [ "${1:-}" = --fresh ]; then
    rm -rf "$data/jetstream"
  fi
  echo "nats: starting nats-server -js on 127.0.0.1:${port} (store ${data})" >&2
  # setsid: the server outlives this script, in its own session (a Ctrl-C of `make` does not
  # reach it; `scripts/nats.sh down` stops it).
  setsid "$bin" -js -a 127.0.0.1 -p "$port" -sd "$data" -P "$pid_file" -l "$data/server.log" \
    </dev/null >/dev/null 2>&1 &
  local i
  for i in $(seq 1 100); do
    if listening; then
      return
    fi
    sleep 0.1
  done
  echo "nats: nats-server did not start; see $data/server.log" >&2
  exit 1
}

cmd_down() {
  if running; then
    local pid
    pid=$(cat "$pid_file")
    kill -TERM "$pid"
    local i
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$pid_file"
    echo "nats: stopped" >&2
  fi
}

case "${1:-}" in
  up) cmd_up "${2:-}" ;;
  down) cmd_down ;;
  url) echo "$url" ;;
  status) running ;;
  bin) find_bin ;;
  *) echo "usage: $0 up [--fresh]|down|url|status|bin" >&2; exit 2 ;;
esac
