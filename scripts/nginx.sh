#!/usr/bin/env bash
# Debian's nginx, for `make cluster-test` (which starts one of its own, in the foreground,
# with its configuration and files under .cluster/, and stops it by process id).
#
#   scripts/nginx.sh bin   install the package when missing; print the binary's path
set -euo pipefail
case "${1:-}" in
  bin) exec "$(dirname "$0")/debian.sh" bin nginx ;;
  *) echo "usage: $0 bin" >&2; exit 2 ;;
esac
