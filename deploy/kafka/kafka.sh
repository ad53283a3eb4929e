#!/usr/bin/env bash
# Real Apache Kafka (KRaft, single combined broker+controller) on loopback,
# for the reliability suite and for benchmarks against the real thing.
#
#   deploy/kafka/kafka.sh fetch              jars from Maven Central into the cache (once)
#   deploy/kafka/kafka.sh start DIR          format + start in DIR on free ports;
#                                            prints the bootstrap, writes DIR/bootstrap
#   deploy/kafka/kafka.sh stop DIR           clean shutdown (SIGTERM, then SIGKILL after 30 s)
#   deploy/kafka/kafka.sh restart DIR        stop + start on the same ports and data
#
# Broker properties from the environment, read when DIR is first set up:
#   KAFKA_PARTITIONS (default 3)            num.partitions of auto-created topics
#   KAFKA_AUTO_CREATE_TOPICS (default true) auto.create.topics.enable; false as in
#                                           most production clusters
#
# Cache: $INVSYNC_KAFKA_CACHE or deploy/kafka/cache (git-ignored); a second
# run reuses it. Needs java (17+) and mvn: deploy/install-deps.sh installs both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${INVSYNC_KAFKA_CACHE:-$here/cache}
libs=$cache/libs

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  if [ -f "$libs/.complete" ] && [ "$libs/.complete" -nt "$here/pom.xml" ]; then return 0; fi
  echo "kafka.sh: fetching Apache Kafka jars from Maven Central into $libs" >&2
  rm -rf "$libs"; mkdir -p "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >&2 ||
    die "mvn could not fetch Kafka (see above)"
  touch "$libs/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

java_run() { # main-class args... — replaces the calling (sub)shell: call it in ( ) or with &
  local main=$1; shift
  exec java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$libs/*" "$main" "$@"
}

wait_ready() { # port deadline_s
  local port=$1 deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      tail -n 30 "$dir/server.log" >&2 || true; die "broker exited during start-up (log: $dir/server.log)"
    fi
    # Ready when the broker answers on its port and has said it started.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
       grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  die "broker did not become ready within $2 s (log: $dir/server.log)"
}

start() {
  fetch
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    cat "$dir/bootstrap"; return 0
  fi
  if [ ! -f "$dir/server.properties" ]; then
    local bport cport
    bport=$(free_port); cport=$(free_port)
    while [ "$cport" = "$bport" ]; do cport=$(free_port); done
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=${KAFKA_PARTITIONS:-3}
auto.create.topics.enable=${KAFKA_AUTO_CREATE_TOPICS:-true}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
log.flush.interval.messages=9223372036854775807
PROPS
    cat > "$dir/log4j2.properties" <<LOG
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
LOG
    echo "127.0.0.1:$bport" > "$dir/bootstrap"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id
    id=$( (java_run kafka.tools.StorageTool random-uuid) 2>/dev/null | tail -n 1)
    (java_run kafka.tools.StorageTool format --standalone -t "$id" -c "$dir/server.properties") \
      > "$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "storage format failed"; }
  fi
  : > "$dir/server.log"
  # java_run execs: the background subshell becomes the broker, so the pid is the JVM's
  # own and `stop` signals the broker itself.
  (java_run kafka.Kafka "$dir/server.properties") < /dev/null > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  local port
  port=$(cut -d: -f2 < "$dir/bootstrap")
  wait_ready "$port" "${KAFKA_START_TIMEOUT:-120}"
  cat "$dir/bootstrap"
}

stop() {
  [ -f "$dir/pid" ] || return 0
  local pid; pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

cmd=${1:-}; dir=${2:-}
case "$cmd" in
  fetch) fetch ;;
  start) [ -n "$dir" ] || die "usage: kafka.sh start DIR"; dir=$(mkdir -p "$dir" && cd "$dir" && pwd); start ;;
  stop) [ -n "$dir" ] || die "usage: kafka.sh stop DIR"; dir=$(cd "$dir" && pwd); stop ;;
  restart) [ -n "$dir" ] || die "usage: kafka.sh restart DIR"; dir=$(cd "$dir" && pwd); stop; start ;;
  *) die "usage: kafka.sh fetch | start DIR | stop DIR | restart DIR" ;;
esac
