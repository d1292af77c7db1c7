"""bridge.log_throttle: a chatty library's repeated warnings, one per template and interval."""

from __future__ import annotations

import logging
import uuid

import pytest

from bridge.log_throttle import RepeatFilter, throttle_repeats


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _logger(filt: logging.Filter) -> logging.Logger:
    logger = logging.getLogger(f"test-throttle-{uuid.uuid4().hex}")
    logger.addFilter(filt)
    return logger


def test_the_first_repeat_passes_then_one_per_interval_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    logger = _logger(RepeatFilter(30.0, clock=clock))
    caplog.set_level(logging.DEBUG)
    for second in range(95):  # 95 s of four lines a second, each with other arguments
        clock.now = 1000.0 + second
        for i in range(4):
            logger.error("Unable connect to node with id %s: %s", 1, f"refused #{second}.{i}")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Unable connect to node with id 1: refused #0.0",
        "Unable connect to node with id 1: refused #30.0 (119 more like this suppressed)",
        "Unable connect to node with id 1: refused #60.0 (119 more like this suppressed)",
        "Unable connect to node with id 1: refused #90.0 (119 more like this suppressed)",
    ]


def test_templates_levels_and_loggers_are_counted_apart(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    filt = RepeatFilter(30.0, clock=clock)
    one, two = _logger(filt), _logger(filt)
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        one.error("a %s", 1)
        one.warning("a %s", 1)
        one.error("b %s", 1)
        two.error("a %s", 1)
    assert len(caplog.records) == 4


def test_lines_below_warning_are_never_held_back(caplog: pytest.LogCaptureFixture) -> None:
    logger = _logger(RepeatFilter(30.0, clock=_Clock()))
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        logger.info("Joined group %s", "g")
    assert len(caplog.records) == 5


def test_throttle_repeats_covers_the_library_loggers_once_each() -> None:
    name = f"chatty{uuid.uuid4().hex}"
    child = logging.getLogger(f"{name}.consumer.fetcher")  # makes "<name>.consumer" a placeholder
    filt = throttle_repeats(name)
    assert throttle_repeats(name) is filt
    later = logging.getLogger(f"{name}.consumer")  # a placeholder then, the same logger now
    for logger in (logging.getLogger(name), child, later):
        assert logger.filters.count(filt) == 1
    assert filt not in logging.getLogger("bridge").filters
