#!/usr/bin/env bash
# Starts (or reuses) PostgreSQL, Redis and Kafka on loopback. Endpoints configured through ORRERY_* variables
# that point elsewhere are left alone (see docs/operations.md).
source "$(dirname "$0")/common.sh"
D="$(dirname "$0")"
[ -n "${ORRERY_EXTERNAL_POSTGRES:-}" ] || bash "$D/postgres.sh" start
[ -n "${ORRERY_EXTERNAL_REDIS:-}" ] || bash "$D/redis.sh" start
[ -n "${ORRERY_EXTERNAL_KAFKA:-}" ] || bash "$D/kafka.sh" start
log "infrastructure ready: postgres 127.0.0.1:$PG_PORT, redis 127.0.0.1:$REDIS_PORT, kafka 127.0.0.1:$KAFKA_PORT"
