#!/usr/bin/env bash
# Debian's package of an engine the tests start themselves (PgBouncer, nginx): installed
# when its binary is missing, with the package's own service stopped (the tests run their
# own, on ports and with files of their own).
#
#   scripts/debian.sh bin PACKAGE [BINARY]   install PACKAGE when BINARY (default: PACKAGE)
#                                            is missing; print the binary's path
set -euo pipefail
[ "${1:-}" = bin ] && [ -n "${2:-}" ] || { echo "usage: $0 bin PACKAGE [BINARY]" >&2; exit 2; }
package=$2
binary=${3:-$2}
found() { command -v "$binary" 2>/dev/null || { [ -x "/usr/sbin/$binary" ] && echo "/usr/sbin/$binary"; }; }
if ! found >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "$package: installing Debian's package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >/dev/null; }
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$package" 2>/dev/null; then
      systemctl stop "$package" || true
    fi
  else
    echo "$package: missing; install it, e.g. 'sudo apt-get install -y $package'" >&2
    exit 1
  fi
fi
found
