#!/bin/bash
# As in the Kafka distribution: kafka.admin.ConfigCommand
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.ConfigCommand "$@"
