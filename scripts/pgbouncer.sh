#!/usr/bin/env bash
# Debian's PgBouncer, for the tests that put it in front of the test PostgreSQL
# (adapter-postgres's test_support::pgbouncer starts one per test on a port of its own).
#
#   scripts/pgbouncer.sh bin   install the package when missing; print the binary's path
set -euo pipefail
case "${1:-}" in
  bin)
    if ! command -v pgbouncer >/dev/null 2>&1; then
      if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "pgbouncer: installing Debian's package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
          || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; }
        # The package's own service is not wanted: the tests start their own.
        if command -v systemctl >/dev/null && systemctl is-active --quiet pgbouncer 2>/dev/null; then
          systemctl stop pgbouncer || true
        fi
      else
        echo "pgbouncer: missing; install it, e.g. 'sudo apt-get install -y pgbouncer'" >&2
        exit 1
      fi
    fi
    command -v pgbouncer
    ;;
  *) echo "usage: $0 bin" >&2; exit 2 ;;
esac
