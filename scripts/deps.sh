#!/usr/bin/env bash
# Installs the one system package the build needs and a fresh Debian may lack:
# libpq's headers and library (diesel's PostgreSQL backend links against libpq).
set -euo pipefail
if [ -e /usr/include/postgresql/libpq-fe.h ] || pkg-config --exists libpq 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "deps: installing libpq-dev" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpq-dev >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpq-dev >/dev/null; }
else
  echo "deps: libpq headers missing; install them, e.g. 'sudo apt-get install -y libpq-dev'" >&2
  exit 1
fi
