#!/usr/bin/env bash
# Apache Kafka (KRaft, one combined broker+controller) on 127.0.0.1:$KAFKA_PORT, run from Maven Central jars
# with the machine's JDK. `KAFKA_NAME` lets tests run a second, disposable broker beside the main one.
source "$(dirname "$0")/common.sh"
NAME="${KAFKA_NAME:-kafka}"
LIBS="$STATE/kafka-libs/$KAFKA_VERSION"
DIR="$STATE/$NAME"

fetch_jars() {
  [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] && return 0
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central"
  mkdir -p "$LIBS.tmp"
  mvn -B -q -f "$ROOT/scripts/infra/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp"
  rm -rf "$LIBS"; mv "$LIBS.tmp" "$LIBS"
}

start() {
  if port_open "$KAFKA_PORT"; then log "kafka already up on $KAFKA_PORT"; return; fi
  fetch_jars
  mkdir -p "$DIR/data"
  sed -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" -e "s#@DATA@#$DIR/data#g" \
    "$ROOT/scripts/infra/kafka/server.properties" >"$DIR/server.properties"
  cp "$ROOT/scripts/infra/kafka/log4j.properties" "$DIR/log4j.properties"
  local opts=(-Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$DIR/log4j.properties" "-Dkafka.logs.dir=$DIR")
  if [ ! -f "$DIR/data/meta.properties" ]; then
    log "formatting kafka storage"
    java "${opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format -g \
      -t "$(java "${opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)" -c "$DIR/server.properties" >/dev/null
  fi
  log "starting kafka on $KAFKA_PORT"
  nohup java "${opts[@]}" -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" >"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/kafka.pid"
  wait_port "$KAFKA_PORT" 90 kafka || { tail -n 30 "$DIR/server.log" >&2; exit 1; }
}

stop() {
  [ -f "$DIR/kafka.pid" ] || return 0
  local pid; pid="$(cat "$DIR/kafka.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping kafka ($NAME)"; kill "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/kafka.pid"
}

"${1:-start}"
