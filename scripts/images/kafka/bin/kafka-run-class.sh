#!/bin/bash
# Runs a class of Kafka on the classpath /opt/kafka/libs/*, with the variables of Kafka's own
# kafka-run-class.sh: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS,
# KAFKA_OPTS and LOG_DIR (default /opt/kafka/logs).
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]"
  exit 1
fi
base_dir=$(dirname "$0")/..
while [ $# -gt 0 ]; do
  case "$1" in
    -daemon|-loggc) shift ;;
    -name) shift 2 ;;
    *) break ;;
  esac
done
LOG_DIR=${LOG_DIR:-$base_dir/logs}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256M}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:$base_dir/config/tools-log4j.properties}
# shellcheck disable=SC2086  # the *_OPTS variables are word lists
exec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS "-Dkafka.logs.dir=$LOG_DIR" \
  $KAFKA_LOG4J_OPTS $KAFKA_OPTS -cp "$base_dir/libs/*${CLASSPATH:+:$CLASSPATH}" "$@"
