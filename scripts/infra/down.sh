#!/usr/bin/env bash
# Stops what up.sh started; data stays in .orrery/ (remove that folder to start afresh).
source "$(dirname "$0")/common.sh"
D="$(dirname "$0")"
bash "$D/kafka.sh" stop
bash "$D/redis.sh" stop
bash "$D/postgres.sh" stop
