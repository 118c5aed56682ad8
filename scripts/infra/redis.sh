#!/usr/bin/env bash
# Redis on 127.0.0.1:$REDIS_PORT from Debian's redis-server. Idempotent: reuses a running server.
source "$(dirname "$0")/common.sh"
DIR="$STATE/redis"

start() {
  if port_open "$REDIS_PORT"; then log "redis already up on $REDIS_PORT"; return; fi
  apt_install redis-server
  mkdir -p "$DIR"
  log "starting redis on $REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$DIR" \
    --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --save "" --appendonly no
  wait_port "$REDIS_PORT" 20 redis
}

stop() {
  if port_open "$REDIS_PORT"; then log "stopping redis"; redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
}

"${1:-start}"
