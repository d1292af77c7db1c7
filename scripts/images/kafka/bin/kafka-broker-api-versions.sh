#!/bin/bash
# As in the Kafka distribution: kafka.admin.BrokerApiVersionsCommand
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.BrokerApiVersionsCommand "$@"
