"""The ``schedule`` source: EventBridge schedules (``rate()``, ``cron()``, ``at()``)."""

from connectors.schedule.connector import ScheduleConnector

__all__ = ["ScheduleConnector"]
