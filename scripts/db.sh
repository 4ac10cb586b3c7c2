#!/usr/bin/env bash
# Provision and run a project-local PostgreSQL for development and tests.
#
#   scripts/db.sh up     initdb into ./.pgdata when missing, start it (idempotent)
#   scripts/db.sh url    print the DATABASE_URL of that server and nothing else
#   scripts/db.sh down   stop it
#
# PostgreSQL refuses to run as root, so as root its binaries run as the `postgres`
# user; as anyone else they run as the caller. The port is the project's own
# (PGPORT_LOCAL, default 54329) so it never collides with a system server.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.pgdata"
port="${PGPORT_LOCAL:-54329}"
db_name="shop"
url="postgres://postgres@127.0.0.1:${port}/${db_name}"

find_bin() {
  if command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
      echo "$d"
      return
    fi
  done
  cat >&2 <<'MSG'
No PostgreSQL server binaries found (looked for pg_ctl on PATH and in /usr/lib/postgresql/*/bin).
Install them, e.g. on Debian/Ubuntu:  sudo apt-get install -y postgresql
or set DATABASE_URL to a PostgreSQL (>= 13) you already run.
MSG
  exit 1
}

# Run a PostgreSQL binary as the right user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd_up() {
  local bin
  bin=$(find_bin)
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$data" 2>/dev/null || { id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres; chown postgres: "$data"; }; fi
    chmod 700 "$data"
    echo "db: initdb into $data" >&2
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<CONF
# project-local settings (scripts/db.sh)
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${data}'
max_connections = 300
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
log_min_error_statement = panic
CONF
  fi
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "db: starting PostgreSQL on 127.0.0.1:${port}" >&2
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
  fi
  # Members of the role shop_password_login must give their password over TCP, so tests
  # of passwords in DATABASE_URL and of ~/.pgpass prove the password got through (every
  # other role is trusted). The first matching line wins, so it goes on top.
  local hba="$data/pg_hba.conf" hba_line="host all +shop_password_login 127.0.0.1/32 scram-sha-256"
  if ! grep -qxF "$hba_line" "$hba"; then
    { echo "# scripts/db.sh: password tests"; echo "$hba_line"; cat "$hba"; } >"$hba.new"
    cat "$hba.new" >"$hba" && rm -f "$hba.new"
    as_pg "$bin/pg_ctl" -D "$data" reload >/dev/null
  fi
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc \
    "DO \$\$ BEGIN CREATE ROLE shop_password_login NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
  # Create the application database once.
  if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '${db_name}'" | grep -q 1; then
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE ${db_name}" >/dev/null
  fi
}

cmd_down() {
  local bin
  bin=$(find_bin)
  if [ -f "$data/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "db: stopped" >&2
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  url) echo "$url" ;;
  *) echo "usage: $0 up|down|url" >&2; exit 2 ;;
esac
