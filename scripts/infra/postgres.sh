#!/usr/bin/env bash
# PostgreSQL 15 on 127.0.0.1:$PG_PORT: one database `orrery`, and per service a login role owning a schema
# of the same name that no other service role may use. Idempotent: reuses a running server.
source "$(dirname "$0")/common.sh"
apt_install postgresql
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
PGDIR="$STATE/postgres"
AS=()
# The server refuses to run as root; run it as the packaged `postgres` user when we are root. That user
# may not be able to reach a checkout under a private home: then the data lives in /var/tmp instead.
if [ "$(id -u)" -eq 0 ]; then
  AS=(runuser -u postgres -- env -C /)
  if ! runuser -u postgres -- test -x "$STATE"; then
    PGDIR="/var/tmp/orrery-postgres-$(printf '%s' "$STATE" | md5sum | cut -c1-12)"
  fi
fi
DATA="$PGDIR/data"

start() {
  if port_open "$PG_PORT"; then log "postgres already up on $PG_PORT"; else
    mkdir -p "$PGDIR"
    [ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
    if [ ! -s "$DATA/PG_VERSION" ]; then
      log "initialising postgres data dir"
      "${AS[@]}" "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGDIR'
max_connections = 300
shared_buffers = 128MB
fsync = on
synchronous_commit = off
log_min_messages = warning
CONF
      # Password auth over TCP so each service role proves who it is; the superuser may log in locally.
      cat >"$DATA/pg_hba.conf" <<HBA
local all postgres trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.1/32 scram-sha-256
HBA
    fi
    log "starting postgres on $PG_PORT"
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 60 start >/dev/null
  fi
  provision
}

# PG_HOST / PG_SUPERUSER (and PGPASSWORD) let `provision` prepare an external or containerised server too.
psql_su() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -h "${PG_HOST:-127.0.0.1}" -p "$PG_PORT" -U "${PG_SUPERUSER:-postgres}" -v ON_ERROR_STOP=1 -qAt "$@"; }

provision() {
  psql_su -d postgres -c "SELECT 1 FROM pg_database WHERE datname='orrery'" | grep -q 1 \
    || psql_su -d postgres -c "CREATE DATABASE orrery"
  psql_su -d orrery -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; REVOKE ALL ON DATABASE orrery FROM PUBLIC"
  for svc in "${SERVICES[@]}"; do
    # Role and password are the service's name: local development only; deployments bring their own.
    psql_su -d orrery <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orrery_$svc') THEN
    CREATE ROLE orrery_$svc LOGIN PASSWORD 'orrery_$svc' NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
END \$\$;
GRANT CONNECT ON DATABASE orrery TO orrery_$svc;
CREATE SCHEMA IF NOT EXISTS $svc AUTHORIZATION orrery_$svc;
ALTER ROLE orrery_$svc SET search_path = $svc;
SQL
  done
}

stop() {
  if [ -s "$DATA/postmaster.pid" ]; then
    log "stopping postgres"; "${AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
  fi
}

"${1:-start}"
