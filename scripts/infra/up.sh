#!/usr/bin/env bash
# Starts (or reuses) PostgreSQL, Redis and Kafka on loopback. Endpoints configured through ORRERY_* variables
# that point elsewhere are left alone (see docs/operations.md).
source "$(dirname "$0")/common.sh"
D="$(dirname "$0")"
[ -n "${ORRERY_EXTERNAL_POSTGRES:-}" ] || bash "$D/postgres.sh" start
[ -n "${ORRERY_EXTERNAL_REDIS:-}" ] || bash "$D/redis.sh" start
if [ -z "${ORRERY_EXTERNAL_KAFKA:-}" ]; then
  bash "$D/kafka.sh" start
  # Auto-creation is off: the architecture's topics, with their partition counts, exist before anything
  # publishes (the services also ensure them when they start).
  if [ -x "$ROOT/.venv/bin/python" ]; then
    "$ROOT/.venv/bin/python" -m orrery_shared.kafka.topics | sed 's/^/[infra] /' >&2 || exit 1
  fi
fi
log "infrastructure ready: postgres 127.0.0.1:$PG_PORT, redis 127.0.0.1:$REDIS_PORT, kafka 127.0.0.1:$KAFKA_PORT"
