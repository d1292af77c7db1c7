#!/bin/bash
# As in the Kafka distribution: org.apache.kafka.tools.TopicCommand
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
