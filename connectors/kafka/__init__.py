"""Topics of a self-managed Apache Kafka cluster as an event source."""

from connectors.kafka.config import KafkaSource
from connectors.kafka.connector import KafkaConnector

__all__ = ["KafkaConnector", "KafkaSource"]
