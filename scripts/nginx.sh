#!/usr/bin/env bash
# Debian's nginx, for `make cluster-test` (which starts one of its own, in the foreground,
# with its configuration and files under .cluster/, and stops it by process id).
#
#   scripts/nginx.sh bin   install the package when missing; print the binary's path
set -euo pipefail
case "${1:-}" in
  bin)
    if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
      if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "nginx: installing Debian's package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null \
          || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null; }
        # The package's own service (port 80) is not wanted: the test starts its own.
        if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
          systemctl stop nginx || true
        fi
      else
        echo "nginx: missing; install it, e.g. 'sudo apt-get install -y nginx'" >&2
        exit 1
      fi
    fi
    command -v nginx || echo /usr/sbin/nginx
    ;;
  *) echo "usage: $0 bin" >&2; exit 2 ;;
esac
