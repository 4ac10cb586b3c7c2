#!/usr/bin/env bash
# Creates the project-local virtualenv ./.venv with scripts/py-requirements.txt
# installed (from PyPI), once per version of that file, and prints its path.
# Needs python3 with venv and pip; as root on Debian, a missing venv module is
# installed (python3-venv).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/scripts/py-requirements.txt"
stamp="$venv/.requirements.sha256"
want=$( (sha256sum "$req"; python3 --version) | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv"
  exit 0
fi

command -v python3 >/dev/null || { echo "venv: python3 is required" >&2; exit 1; }
rm -rf "$venv"
if ! python3 -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "venv: installing python3-venv" >&2
    ver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv "python${ver}-venv" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; }; }
    python3 -m venv "$venv" >&2
  else
    echo "venv: python3 cannot create a virtualenv; install its venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
echo "venv: installing $(grep -cv '^\s*\(#\|$\)' "$req") pinned packages into $venv" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv"
