#!/usr/bin/env bash
# crates/adapter-postgres/src/schema.rs is generated, never edited by hand: it is what
# `diesel print-schema` prints for a database migrated with migrations/ (diesel.toml).
#
#   scripts/schema.sh check   fail when the committed file differs from it (`make lint`)
#   scripts/schema.sh write   regenerate the file (`make schema`)
#
# Both drop and migrate afresh a scratch database, `shop_schema_check`, on the server of
# DATABASE_URL (its role needs CREATEDB; the URL must name a database), and install
# diesel_cli into cargo's bin directory when it is missing: a `cargo install` of about
# 5-8 minutes on two cores, once per machine.
set -euo pipefail

# The diesel_cli release of the diesel version in Cargo.lock.
DIESEL_CLI_VERSION=2.3.14

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
file=crates/adapter-postgres/src/schema.rs
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

url="${DATABASE_URL:?DATABASE_URL must name a PostgreSQL database (make lint provides one)}"
base="${url%%\?*}"
scratch="${base%/*}/shop_schema_check${url:${#base}}"

installed=$(diesel --version 2>/dev/null || true)
if ! grep -q "Version: ${DIESEL_CLI_VERSION}\$" <<<"$installed"; then
  echo "schema: installing diesel_cli ${DIESEL_CLI_VERSION} (once per machine; several minutes)" >&2
  cargo install diesel_cli --version "=${DIESEL_CLI_VERSION}" --locked \
    --no-default-features --features postgres --quiet
fi

case "${1:-}" in
  check)
    # --locked-schema: diesel fails instead of rewriting the file, and prints the diff.
    if ! out=$(diesel database reset --no-default-migration --database-url "$scratch" --locked-schema 2>&1); then
      echo "$out" >&2
      if grep -q "would result in changes" <<<"$out"; then
        echo "schema: $file is not what diesel print-schema prints for the migrations;" \
          "regenerate it with 'make schema' and commit it" >&2
      else
        echo "schema: could not migrate the scratch database $scratch" >&2
      fi
      exit 1
    fi
    ;;
  write)
    diesel database reset --no-default-migration --database-url "$scratch" >/dev/null
    echo "schema: wrote $file" >&2
    ;;
  *) echo "usage: $0 check|write" >&2; exit 2 ;;
esac
