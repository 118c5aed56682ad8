# Shared settings for the local infrastructure scripts; sourced, never run.
# Every path lives under one git-ignored folder so a checkout can be wiped with `rm -rf .orrery`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${ORRERY_STATE_DIR:-$ROOT/.orrery}"
PG_PORT="${ORRERY_PG_PORT:-55432}"
REDIS_PORT="${ORRERY_REDIS_PORT:-56379}"
KAFKA_PORT="${ORRERY_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${ORRERY_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_VERSION="3.9.1"
SERVICES=(auth characters chat dossier)
mkdir -p "$STATE"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  die "$3 did not open 127.0.0.1:$1 within $2s"
}

apt_install() { # installs Debian packages once, quietly
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "need Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing ${missing[*]}"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
