#!/usr/bin/env bash
# Debian's PgBouncer, for the tests that put it in front of the test PostgreSQL
# (adapter-postgres's test_support::pgbouncer starts one per test on a port of its own) and
# for `make bench` and `make cluster-test`.
#
#   scripts/pgbouncer.sh bin   install the package when missing; print the binary's path
set -euo pipefail
case "${1:-}" in
  bin) exec "$(dirname "$0")/debian.sh" bin pgbouncer ;;
  *) echo "usage: $0 bin" >&2; exit 2 ;;
esac
