"""Benchmark handler: does nothing and answers ``{}`` (no batch item failures)."""


def handler(event, context):
    return {}
