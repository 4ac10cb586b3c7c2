#!/usr/bin/env bash
# Generates the operating-system locale named by $1 (default de_DE.UTF-8) when missing, so
# the test PostgreSQL can report its errors in that language (a test checks that the server
# still classifies them: adapter-postgres's tests/error_language.rs). Debian only; as root it
# installs the `locales` package when needed. Prints `generated` when it generated the
# locale now: a PostgreSQL already running sees only the locales there were when it started,
# so the caller restarts it (make test does).
set -euo pipefail
want="${1:-de_DE.UTF-8}"
normalized=$(echo "$want" | tr 'A-Z' 'a-z' | sed 's/utf-8/utf8/')
if locale -a 2>/dev/null | tr 'A-Z' 'a-z' | grep -qx "$normalized"; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "locale: $want is missing; generate it (Debian: locales package, locale-gen)" >&2
  exit 1
fi
if ! command -v locale-gen >/dev/null; then
  echo "locale: installing locales" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q locales >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q locales >/dev/null; }
fi
charset="${want#*.}"
grep -qxF "$want $charset" /etc/locale.gen 2>/dev/null || echo "$want $charset" >>/etc/locale.gen
echo "locale: generating $want" >&2
locale-gen >/dev/null
echo generated
