#!/bin/bash
# As in the Kafka distribution: kafka.tools.ConsoleProducer
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.ConsoleProducer "$@"
