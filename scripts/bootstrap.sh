#!/usr/bin/env bash
# Installs what Orrery needs to build and run on a fresh Debian machine: system packages, uv (from PyPI, into
# .orrery/tools) and the workspace's locked Python dependencies (into .venv, with the machine's Python 3.11).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/infra/common.sh"
apt_install postgresql redis-server
command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven
apt_install chromium fonts-dejavu-core  # the browser tests drive Debian's Chromium (never a downloaded one)
TOOLS="$STATE/tools"
UV_VERSION="0.13.8"
if [ ! -x "$TOOLS/bin/uv" ] || ! "$TOOLS/bin/uv" --version | grep -q "$UV_VERSION"; then
  log "installing uv $UV_VERSION"
  PY="$(command -v python3.11 || command -v python3)"
  "$PY" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "uv==$UV_VERSION"
fi
export UV_PYTHON_DOWNLOADS=never
cd "$ROOT"
"$TOOLS/bin/uv" sync --locked --python "$(command -v python3.11 || command -v python3)" -q
