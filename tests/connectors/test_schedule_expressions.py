"""AWS schedule expressions: parsing, validation and fire times (connectors.schedule.expressions).

Expected fire times are worked out by hand from the 2026 calendar (1 January 2026 is a
Thursday); ``test_matches_a_minute_by_minute_reference`` cross-checks the evaluator
against an independent brute-force walk over every minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from connectors.schedule.expressions import (
    INVALID,
    AtSchedule,
    CronSchedule,
    RateSchedule,
    Schedule,
    ScheduleExpressionError,
    parse,
)

Z = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def at(text: str, tz: ZoneInfo = Z) -> datetime:
    """An aware datetime from an ISO string; without an offset, read in ``tz`` (fold=0)."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=tz)


def fires(
    expression: str,
    after: str,
    count: int,
    tz: ZoneInfo = Z,
    anchor: datetime | None = None,
) -> list[str]:
    """The next ``count`` fire times after ``after``, as ISO strings with their offsets."""
    schedule = parse(expression, allow_seconds=True)
    out: list[str] = []
    moment: datetime | None = at(after, tz)
    while len(out) < count:
        assert moment is not None
        moment = schedule.next_after(moment, tz, anchor=anchor)
        if moment is None:
            break
        out.append(moment.isoformat())
    return out


# ------------------------------------------------------------------ AWS's documented examples


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # EventBridge "Creating a rule that runs on a schedule", examples table
        (  # Run at 10:00 am (UTC+0) every day
            "cron(0 10 * * ? *)",
            "2026-01-01T10:00:00",
            ["2026-01-02T10:00:00+00:00", "2026-01-03T10:00:00+00:00"],
        ),
        (  # Run at 12:15 pm (UTC+0) every day
            "cron(15 12 * * ? *)",
            "2026-01-01T12:14:59",
            ["2026-01-01T12:15:00+00:00", "2026-01-02T12:15:00+00:00"],
        ),
        (  # Run at 6:00 pm (UTC+0) every Monday through Friday (from a Friday's run)
            "cron(0 18 ? * MON-FRI *)",
            "2026-01-02T18:00:00",
            ["2026-01-05T18:00:00+00:00", "2026-01-06T18:00:00+00:00"],
        ),
        (  # Run at 8:00 am (UTC+0) every 1st day of the month
            "cron(0 8 1 * ? *)",
            "2026-01-01T08:00:00",
            ["2026-02-01T08:00:00+00:00", "2026-03-01T08:00:00+00:00"],
        ),
        (  # Run every 15 minutes
            "cron(0/15 * * * ? *)",
            "2026-01-01T23:50:00",
            [
                "2026-01-02T00:00:00+00:00",
                "2026-01-02T00:15:00+00:00",
                "2026-01-02T00:30:00+00:00",
            ],
        ),
        (  # Run every 10 minutes Monday through Friday (Friday night, then Monday)
            "cron(0/10 * ? * MON-FRI *)",
            "2026-01-02T23:45:00",
            [
                "2026-01-02T23:50:00+00:00",
                "2026-01-05T00:00:00+00:00",
                "2026-01-05T00:10:00+00:00",
            ],
        ),
        (  # Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm
            "cron(0/5 8-17 ? * MON-FRI *)",
            "2026-01-02T17:50:00",
            [
                "2026-01-02T17:55:00+00:00",
                "2026-01-05T08:00:00+00:00",
                "2026-01-05T08:05:00+00:00",
            ],
        ),
        (  # the first Monday of the month, 9:00 (the brief's 2#1)
            "cron(0 9 ? * 2#1 *)",
            "2026-01-01T00:00:00",
            [
                "2026-01-05T09:00:00+00:00",
                "2026-02-02T09:00:00+00:00",
                "2026-03-02T09:00:00+00:00",
                "2026-04-06T09:00:00+00:00",
            ],
        ),
        (  # put-rule example: every day at 12:00pm UTC+0
            "cron(0 12 * * ? *)",
            "2026-01-01T12:00:00",
            ["2026-01-02T12:00:00+00:00"],
        ),
        (  # put-rule example: every day, at 2:05pm and 2:35pm UTC+0
            "cron(5,35 14 * * ? *)",
            "2026-01-01T14:05:00",
            ["2026-01-01T14:35:00+00:00", "2026-01-02T14:05:00+00:00"],
        ),
        (  # put-rule example: 10:15am UTC+0 on the last Friday of each month, 2019 to 2022
            "cron(15 10 ? * 6L 2019-2022)",
            "2018-06-01T00:00:00",
            [
                "2019-01-25T10:15:00+00:00",
                "2019-02-22T10:15:00+00:00",
                "2019-03-29T10:15:00+00:00",
            ],
        ),
        (  # ... whose last run is Friday 30 December 2022
            "cron(15 10 ? * 6L 2019-2022)",
            "2022-12-01T00:00:00",
            ["2022-12-30T10:15:00+00:00"],
        ),
        (  # Scheduler example: last Friday of each month, 2022 to 2023
            "cron(15 10 ? * 6L 2022-2023)",
            "2023-11-30T00:00:00",
            ["2023-12-29T10:15:00+00:00"],
        ),
    ],
)
def test_documented_examples(expression: str, after: str, expected: list[str]) -> None:
    assert fires(expression, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "last"),
    [
        ("cron(15 10 ? * 6L 2019-2022)", "2022-12-30T10:15:00"),
        ("cron(15 10 ? * 6L 2022-2023)", "2023-12-29T10:15:00"),
    ],
)
def test_documented_year_ranges_run_out(expression: str, last: str) -> None:
    assert parse(expression).next_after(at(last), Z) is None


def test_documented_example_every_30_minutes_from_10pm_to_2am_weekdays() -> None:
    # EventBridge examples table: cron(0/30 20-2 ? * MON-FRI *), "between 10:00 pm on the
    # starting day to 2:00 am on the following day": Hours 20-2 wraps to 20-23 and 0-2.
    # Fields match one by one, so Saturday 00:00-02:30 does not fire, Monday's does.
    schedule = parse("cron(0/30 20-2 ? * MON-FRI *)")
    got = [
        t.strftime("%a %H:%M")
        for t in schedule.times_between(at("2026-01-02T19:59:00"), at("2026-01-05T20:00:00"), Z)
    ]
    friday = [f"Fri {h:02d}:{m:02d}" for h in range(20, 24) for m in (0, 30)]
    monday = [f"Mon {h:02d}:{m:02d}" for h in range(3) for m in (0, 30)]
    assert got == [*friday, *monday, "Mon 20:00"]


def test_documented_time_zone_example_new_york() -> None:
    # Scheduler "Time zones" example: cron(30 8 * * ? *) in America/New_York, 8:30 a.m.
    assert fires("cron(30 8 * * ? *)", "2026-01-01T00:00:00", 2, NEW_YORK) == [
        "2026-01-01T08:30:00-05:00",
        "2026-01-02T08:30:00-05:00",
    ]
    assert fires("cron(30 8 * * ? *)", "2026-07-01T00:00:00", 1, NEW_YORK) == [
        "2026-07-01T08:30:00-04:00"
    ]


def test_documented_minute_increment_example() -> None:
    # "1/10 to specify every tenth minute, starting from the first minute of the hour"
    schedule = parse("cron(1/10 * * * ? *)")
    got = schedule.times_between(at("2026-01-01T00:00:00"), at("2026-01-01T01:00:00"), Z)
    assert [t.minute for t in got] == [1, 11, 21, 31, 41, 51]


# ------------------------------------------------------------------ the special characters


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # L in Day-of-month: the last day of the month
        (
            "cron(0 0 L * ? *)",
            "2026-01-01T00:00:00",
            ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"],
        ),
        # L alone in Day-of-week: the last day of the week, Saturday
        ("cron(0 0 ? * L *)", "2026-01-01T00:00:00", ["2026-01-03", "2026-01-10"]),
        # 5L: the last Thursday of the month
        ("cron(0 0 ? * 5L *)", "2026-01-01T00:00:00", ["2026-01-29", "2026-02-26"]),
        # a name works before L and #, in any case
        ("cron(0 0 ? * fril *)", "2026-01-01T00:00:00", ["2026-01-30", "2026-02-27"]),
        # 3#2: the second Tuesday
        ("cron(0 0 ? * 3#2 *)", "2026-01-01T00:00:00", ["2026-01-13", "2026-02-10"]),
        ("cron(0 0 ? * TUE#2 *)", "2026-01-01T00:00:00", ["2026-01-13", "2026-02-10"]),
        # MON#5: only months with five Mondays (March and June 2026)
        ("cron(0 0 ? * MON#5 *)", "2026-01-01T00:00:00", ["2026-03-30", "2026-06-29"]),
        # 15W: Thu 15 Jan stays; Sun 15 Feb -> Mon 16; Sat 15 Aug -> Fri 14
        (
            "cron(0 0 15W * ? *)",
            "2026-01-01T00:00:00",
            ["2026-01-15", "2026-02-16", "2026-03-16", "2026-04-15"],
        ),
        ("cron(0 0 15W AUG ? *)", "2026-01-01T00:00:00", ["2026-08-14"]),
        # LW: the last weekday (Sat 31 Jan -> Fri 30; Sat 28 Feb -> Fri 27; Sun 31 May -> 29)
        (
            "cron(0 0 LW * ? *)",
            "2026-01-01T00:00:00",
            ["2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30", "2026-05-29"],
        ),
        # lists, ranges, wrap-around ranges and names
        ("cron(0 0 1,15 * ? *)", "2026-01-01T00:00:00", ["2026-01-15", "2026-02-01"]),
        ("cron(0 0 1 JAN,jul ? *)", "2026-01-01T00:00:00", ["2026-07-01", "2027-01-01"]),
        (
            "cron(0 0 1 NOV-FEB ? *)",
            "2026-01-01T00:00:00",
            ["2026-02-01", "2026-11-01", "2026-12-01", "2027-01-01"],
        ),
        (
            "cron(0 0 ? * FRI-MON *)",
            "2026-01-01T00:00:00",
            ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-01-09"],
        ),
        ("cron(0 0 ? * 2,4,6 *)", "2026-01-01T00:00:00", ["2026-01-02", "2026-01-05"]),
        # increments in Day-of-month, Month and Year
        ("cron(0 0 10/10 * ? *)", "2026-01-01T00:00:00", ["2026-01-10", "2026-01-20"]),
        ("cron(0 0 1 2/5 ? *)", "2026-01-01T00:00:00", ["2026-02-01", "2026-07-01"]),
        ("cron(0 0 1 1 ? 2030/5)", "2026-01-01T00:00:00", ["2030-01-01", "2035-01-01"]),
    ],
)
def test_special_characters(expression: str, after: str, expected: list[str]) -> None:
    got = fires(expression, after, len(expected))
    assert [t[:10] for t in got] == expected


@pytest.mark.parametrize(
    ("field", "minutes"),
    [
        ("*/20", [0, 20, 40]),
        ("5/20", [5, 25, 45]),
        ("10-20/5", [10, 15, 20]),
        ("50-10/10", [0, 10, 50]),  # wraps past 59
        ("1,2,3-4", [1, 2, 3, 4]),
        ("07", [7]),
        ("0/59", [0, 59]),
    ],
)
def test_minute_lists_ranges_and_increments(field: str, minutes: list[int]) -> None:
    schedule = parse(f"cron({field} 0 * * ? *)")
    got = schedule.times_between(at("2025-12-31T23:59:00"), at("2026-01-01T00:59:00"), Z)
    assert [t.minute for t in got] == minutes


def test_w_does_not_leave_the_month() -> None:
    # 1W when the 1st is a Saturday (1 August 2026) is Monday the 3rd, not Friday 31 July
    assert fires("cron(0 0 1W * ? *)", "2026-07-02T00:00:00", 2) == [
        "2026-08-03T00:00:00+00:00",
        "2026-09-01T00:00:00+00:00",
    ]
    # 31W when the 31st is a Sunday (31 May 2026) is Friday the 29th, not Monday 1 June;
    # months without a 31st (February, April, June) have no run
    assert [t[:10] for t in fires("cron(0 0 31W * ? *)", "2026-01-01T00:00:00", 4)] == [
        "2026-01-30",  # Saturday 31st -> Friday
        "2026-03-31",
        "2026-05-29",
        "2026-07-31",
    ]


def test_leap_years() -> None:
    assert [t[:10] for t in fires("cron(0 0 29 2 ? *)", "2026-01-01T00:00:00", 2)] == [
        "2028-02-29",
        "2032-02-29",
    ]
    # 2100 is not a leap year (divisible by 100, not by 400)
    assert fires("cron(0 0 29 2 ? *)", "2097-01-01T00:00:00", 1) == ["2104-02-29T00:00:00+00:00"]


def test_l_in_february() -> None:
    got = fires("cron(0 12 L 2 ? *)", "2026-01-01T00:00:00", 3)
    assert [t[:10] for t in got] == ["2026-02-28", "2027-02-28", "2028-02-29"]
    assert fires("cron(0 12 L 2 ? 2100)", "2026-01-01T00:00:00", 1) == ["2100-02-28T12:00:00+00:00"]


def test_year_bounds() -> None:
    assert fires("cron(0 0 1 1 ? *)", "1900-06-01T00:00:00", 1) == ["1970-01-01T00:00:00+00:00"]
    assert fires("cron(0 0 * * ? *)", "2199-12-30T12:00:00", 2) == ["2199-12-31T00:00:00+00:00"]
    assert parse("cron(0 0 * * ? *)").next_after(at("2199-12-31T00:00:00"), Z) is None
    assert parse("cron(0 0 1 1 ? 2199)").next_after(at("2300-01-01T00:00:00"), Z) is None
    assert parse("cron(* * * * ? 1970)").next_after(at("1970-12-31T23:58:30"), Z) == at(
        "1970-12-31T23:59:00"
    )


def test_an_impossible_day_never_fires_and_answers_at_once() -> None:
    for expression in ("cron(0 0 30 2 ? *)", "cron(0 0 31 4,6,9,11 ? *)"):
        started = time.perf_counter()
        assert parse(expression).next_after(at("2026-01-01T00:00:00"), Z) is None
        assert time.perf_counter() - started < 0.5


def test_next_after_skips_by_field_not_by_minute() -> None:
    schedule = parse("cron(0 0 29 2 ? 2196-2199)")
    started = time.perf_counter()
    got = schedule.next_after(at("2026-01-01T00:00:00"), Z)
    elapsed = time.perf_counter() - started
    assert got == at("2196-02-29T00:00:00")
    assert elapsed < 0.05  # minute by minute this would be 90 million steps

    started = time.perf_counter()
    for _ in range(1000):
        parse("cron(0/5 8-17 ? * MON-FRI *)").next_after(at("2026-01-02T17:58:00"), Z)
    assert time.perf_counter() - started < 1.0


def test_next_after_is_strictly_after_and_works_from_any_zone() -> None:
    schedule = parse("cron(0 10 * * ? *)")
    assert schedule.next_after(at("2026-01-01T10:00:00"), Z) == at("2026-01-02T10:00:00")
    assert schedule.next_after(at("2026-01-01T09:59:59.999999"), Z) == at("2026-01-01T10:00:00")
    assert schedule.next_after(at("2026-01-01T10:00:00.000001"), Z) == at("2026-01-02T10:00:00")
    # after given in Berlin, schedule in UTC: 10:30 Berlin is 09:30Z
    got = schedule.next_after(at("2026-01-01T10:30:00+01:00"), Z)
    assert got is not None and got.isoformat() == "2026-01-01T10:00:00+00:00"
    assert got.tzinfo is Z


def test_times_between_is_half_open_and_bounded() -> None:
    schedule = parse("cron(0 * * * ? *)")
    got = list(schedule.times_between(at("2026-01-01T00:00:00"), at("2026-01-01T03:00:00"), Z))
    assert [t.hour for t in got] == [1, 2, 3]  # (start, end]
    assert (
        list(schedule.times_between(at("2026-01-01T03:00:00"), at("2026-01-01T00:00:00"), Z)) == []
    )
    # a long outage of an every-minute schedule: lazy, the caller can cap it
    many = parse("cron(* * * * ? *)").times_between(
        at("2026-01-01T00:00:00"), at("2027-01-01T00:00:00"), Z
    )
    assert len(list(islice(many, 5))) == 5


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse("cron(0 10 * * ? *)").next_after(datetime(2026, 1, 1), Z)
    with pytest.raises(ValueError, match="aware"):
        parse("rate(5 minutes)").next_after(
            at("2026-01-01T00:00:00"), Z, anchor=datetime(2026, 1, 1)
        )


# ------------------------------------------------------------------ cross-check by brute force


def _aws_dow(t: datetime) -> int:
    return (t.weekday() + 1) % 7 + 1  # 1 = SUN .. 7 = SAT


def _days_in_month(t: datetime) -> int:
    following = (t.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - timedelta(days=1)).day


REFERENCE: list[tuple[str, Callable[[datetime], bool]]] = [
    ("cron(0/15 * * * ? *)", lambda t: t.minute % 15 == 0),
    (
        "cron(0/5 8-17 ? * MON-FRI *)",
        lambda t: t.minute % 5 == 0 and 8 <= t.hour <= 17 and t.weekday() < 5,
    ),
    (
        "cron(0/30 20-2 ? * MON-FRI *)",
        lambda t: t.minute in (0, 30) and (t.hour >= 20 or t.hour <= 2) and t.weekday() < 5,
    ),
    (
        "cron(7,37 */6 L * ? *)",
        lambda t: t.minute in (7, 37) and t.hour % 6 == 0 and t.day == _days_in_month(t),
    ),
    (
        "cron(0 9 ? * 2#1 *)",
        lambda t: (t.minute, t.hour) == (0, 9) and t.weekday() == 0 and t.day <= 7,
    ),
    (
        "cron(30 2 ? * 1L *)",
        lambda t: (
            (t.minute, t.hour) == (30, 2) and _aws_dow(t) == 1 and t.day + 7 > _days_in_month(t)
        ),
    ),
    ("cron(45 1 ? * SAT,SUN *)", lambda t: (t.minute, t.hour) == (45, 1) and t.weekday() >= 5),
    ("cron(0,30 * 3-5,25 * ? *)", lambda t: t.minute in (0, 30) and t.day in (3, 4, 5, 25)),
]


@pytest.mark.parametrize(("expression", "matches"), REFERENCE, ids=[e for e, _ in REFERENCE])
@pytest.mark.parametrize(
    ("tz", "start"),
    [
        (Z, "2026-01-20T00:00:00+00:00"),
        (BERLIN, "2026-03-20T00:00:00+00:00"),  # over the spring-forward day
        (NEW_YORK, "2026-10-25T00:00:00+00:00"),  # over the fall-back day
    ],
    ids=["utc", "berlin-spring", "new-york-fall"],
)
def test_matches_a_minute_by_minute_reference(
    expression: str, matches: Callable[[datetime], bool], tz: ZoneInfo, start: str
) -> None:
    # The reference walks every real minute (UTC instants), reads the wall clock, and
    # keeps matching minutes that are the first occurrence of their wall time (fold 0):
    # a skipped wall time never shows up, a repeated one counts once, as AWS documents.
    begin = datetime.fromisoformat(start)
    end = begin + timedelta(days=14)
    expected = []
    moment = begin + timedelta(minutes=1)
    while moment <= end:
        local = moment.astimezone(tz)
        if local.fold == 0 and matches(local):
            expected.append(moment)
        moment += timedelta(minutes=1)
    got = list(parse(expression).times_between(begin, end, tz))
    assert [t.astimezone(UTC) for t in got] == expected
    assert all(t.tzinfo is tz for t in got)


# ------------------------------------------------------------------ daylight saving time


def test_spring_forward_skips_a_time_that_does_not_exist() -> None:
    # Berlin, 29 March 2026: 02:00 CET -> 03:00 CEST; 02:30 does not exist that day
    assert fires("cron(30 2 * * ? *)", "2026-03-27T12:00:00", 3, BERLIN) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-30T02:30:00+02:00",  # skipped on the 29th, not moved to 03:00
        "2026-03-31T02:30:00+02:00",
    ]
    # New York, 8 March 2026: 02:00 EST -> 03:00 EDT
    assert fires("cron(30 2 * * ? *)", "2026-03-07T12:00:00", 2, NEW_YORK) == [
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]
    # AWS's own example, cron(30 2 * * ? *) in America/Los_Angeles (8 March 2026)
    assert fires("cron(30 2 * * ? *)", "2026-03-07T03:00:00", 1, LOS_ANGELES) == [
        "2026-03-09T02:30:00-07:00"
    ]
    # every 15 minutes: 01:45 EST is followed by 03:00 EDT, fifteen real minutes later
    assert fires("cron(0/15 * * * ? *)", "2026-03-08T01:30:00", 3, NEW_YORK) == [
        "2026-03-08T01:45:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:15:00-04:00",
    ]


def test_fall_back_runs_a_repeated_time_once_at_its_first_occurrence() -> None:
    # Berlin, 25 October 2026: 03:00 CEST -> 02:00 CET; 02:30 happens twice
    assert fires("cron(30 2 * * ? *)", "2026-10-24T12:00:00", 2, BERLIN) == [
        "2026-10-25T02:30:00+02:00",  # before the shift (00:30Z), not again at 01:30Z
        "2026-10-26T02:30:00+01:00",
    ]
    # New York, 1 November 2026: 02:00 EDT -> 01:00 EST; 01:30 happens twice
    assert fires("cron(30 1 * * ? *)", "2026-10-31T12:00:00", 2, NEW_YORK) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]
    # every 15 minutes: the repeated hour runs once, so 01:45 EDT is followed by 02:00 EST
    schedule = parse("cron(0/15 * * * ? *)")
    got = schedule.times_between(
        at("2026-11-01T00:50:00-04:00"), at("2026-11-01T02:20:00-05:00"), NEW_YORK
    )
    assert [t.isoformat() for t in got] == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:15:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:45:00-04:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T02:15:00-05:00",
    ]


def test_after_inside_the_repeated_hour() -> None:
    # 01:20 EST is the second pass of 01:20 (06:20Z): the first-pass 01:30 and 01:45
    # (05:30Z, 05:45Z) are already in the past, so the next run is 02:00 EST
    second_pass = datetime(2026, 11, 1, 1, 20, tzinfo=NEW_YORK, fold=1)
    assert second_pass.utcoffset() == timedelta(hours=-5)
    got = parse("cron(0/15 * * * ? *)").next_after(second_pass, NEW_YORK)
    assert got is not None and got.isoformat() == "2026-11-01T02:00:00-05:00"
    got = parse("cron(30 1 * * ? *)").next_after(second_pass, NEW_YORK)
    assert got is not None and got.isoformat() == "2026-11-02T01:30:00-05:00"


def test_utc_has_no_daylight_saving() -> None:
    assert fires("cron(30 2 * * ? *)", "2026-03-28T12:00:00", 2) == [
        "2026-03-29T02:30:00+00:00",
        "2026-03-30T02:30:00+00:00",
    ]


# ------------------------------------------------------------------ rate()


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(2 hours)", timedelta(hours=2)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        ("rate(1440 minutes)", timedelta(days=1)),
    ],
)
def test_rate_units(expression: str, period: timedelta) -> None:
    schedule = parse(expression)
    assert isinstance(schedule, RateSchedule)
    assert schedule.period == period


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("rate(1 minutes)", "if the value is equal to 1, then the unit must be singular"),
        ("rate(1 hours)", "must be singular"),
        ("rate(1 days)", "must be singular"),
        ("rate(5 minute)", "if the value is greater than 1, the unit must be plural"),
        ("rate(5 hour)", "must be plural"),
        ("rate(2 day)", "must be plural"),
        ("rate(0 minutes)", "not a positive integer"),
        ("rate(-1 minutes)", "not a positive integer"),
        ("rate(1.5 hours)", "not a positive integer"),
        ("rate(5 weeks)", "'weeks' is not one of minute"),
        ("rate(5 Minutes)", "'Minutes' is not one of"),
        ("rate(5)", "two fields"),
        ("rate(5 minutes now)", "two fields"),
        ("rate()", "two fields"),
    ],
)
def test_rate_refusals(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleExpressionError) as error:
        parse(expression)
    assert str(error.value).startswith(f"{INVALID} ")
    assert reason in str(error.value)


def test_seconds_are_an_opt_in_extension() -> None:
    for expression in ("rate(2 seconds)", "rate(1 second)"):
        with pytest.raises(ScheduleExpressionError, match="extension"):
            parse(expression)
    for expression, seconds in (("rate(2 seconds)", 2), ("rate(1 second)", 1)):
        schedule = parse(expression, allow_seconds=True)
        assert isinstance(schedule, RateSchedule)
        assert schedule.period == timedelta(seconds=seconds)
    with pytest.raises(ScheduleExpressionError, match="singular"):
        parse("rate(1 seconds)", allow_seconds=True)
    with pytest.raises(ScheduleExpressionError, match="plural"):
        parse("rate(2 second)", allow_seconds=True)


def test_rate_counts_from_the_anchor() -> None:
    anchor = at("2026-01-01T10:03:20")
    # before the anchor: the anchor itself is the first run
    assert fires("rate(5 minutes)", "2026-01-01T09:00:00", 2, anchor=anchor) == [
        "2026-01-01T10:03:20+00:00",
        "2026-01-01T10:08:20+00:00",
    ]
    # later on: the grid anchor + k * period, strictly after
    assert fires("rate(5 minutes)", "2026-01-01T11:08:20", 1, anchor=anchor) == [
        "2026-01-01T11:13:20+00:00"
    ]
    assert fires("rate(2 seconds)", "2026-01-01T10:03:21", 2, anchor=anchor) == [
        "2026-01-01T10:03:22+00:00",
        "2026-01-01T10:03:24+00:00",
    ]
    schedule = parse("rate(1 hour)")
    got = schedule.times_between(
        at("2026-01-01T10:03:20"), at("2026-01-01T13:03:20"), BERLIN, anchor=anchor
    )
    assert [t.isoformat() for t in got] == [
        "2026-01-01T12:03:20+01:00",
        "2026-01-01T13:03:20+01:00",
        "2026-01-01T14:03:20+01:00",
    ]


def test_rate_needs_an_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        parse("rate(5 minutes)").next_after(at("2026-01-01T00:00:00"), Z)


def test_rate_days_are_24_hours_across_daylight_saving() -> None:
    # "days represents a 24-hour duration on the clock": the wall-clock hour moves
    anchor = at("2026-03-28T12:00:00", BERLIN)  # 11:00Z, CET
    assert fires("rate(1 day)", "2026-03-28T12:00:00", 2, BERLIN, anchor=anchor) == [
        "2026-03-29T13:00:00+02:00",
        "2026-03-30T13:00:00+02:00",
    ]
    anchor = at("2026-10-31T12:00:00", NEW_YORK)  # 16:00Z, EDT
    assert fires("rate(1 day)", "2026-10-31T12:00:00", 1, NEW_YORK, anchor=anchor) == [
        "2026-11-01T11:00:00-05:00"
    ]


# ------------------------------------------------------------------ at()


def test_at_runs_once_in_the_schedule_time_zone() -> None:
    # Scheduler example: at(2022-11-20T13:00:00) in America/Los_Angeles, "1pm UTC-8"
    schedule = parse("at(2022-11-20T13:00:00)")
    assert isinstance(schedule, AtSchedule)
    got = schedule.next_after(at("2022-11-01T00:00:00"), LOS_ANGELES)
    assert got is not None and got.isoformat() == "2022-11-20T13:00:00-08:00"
    assert got.astimezone(UTC) == at("2022-11-20T21:00:00")
    assert schedule.next_after(got, LOS_ANGELES) is None  # once
    assert schedule.next_after(at("2026-01-01T00:00:00"), LOS_ANGELES) is None  # in the past
    assert list(
        schedule.times_between(at("2022-01-01T00:00:00"), at("2023-01-01T00:00:00"), LOS_ANGELES)
    ) == [got]


def test_at_across_daylight_saving() -> None:
    # repeated: the first occurrence (as AWS documents for cron)
    fall = parse("at(2026-10-25T02:30:00)").next_after(at("2026-10-01T00:00:00"), BERLIN)
    assert fall is not None and fall.isoformat() == "2026-10-25T02:30:00+02:00"
    # non-existent: AWS documents nothing for at(); moved forward by the gap, not dropped
    spring = parse("at(2026-03-08T02:30:00)").next_after(at("2026-03-01T00:00:00"), NEW_YORK)
    assert spring is not None and spring.isoformat() == "2026-03-08T03:30:00-04:00"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("at(2026-02-30T10:00:00)", "not a date and time"),
        ("at(2026-01-01T24:00:00)", "not a date and time"),
        ("at(2026-01-01 10:00:00)", "at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2026-01-01T10:00)", "at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2026-01-01T10:00:00Z)", "at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2026-1-01T10:00:00)", "at(yyyy-mm-ddThh:mm:ss)"),
    ],
)
def test_at_refusals(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleExpressionError, match=None) as error:
        parse(expression)
    assert reason in str(error.value)


# ------------------------------------------------------------------ cron validation


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        # ? in exactly one of the two day fields
        ("cron(0 10 ? * ? *)", "both '?'"),
        ("cron(0 10 * * * *)", "you must use a ? in the other"),
        ("cron(0 10 1 * MON *)", "you can't specify the Day-of-month and Day-of-week"),
        ("cron(0 10 L * 6L *)", "you must use a ? in the other"),
        ("cron(? 10 * * ? *)", "'?' wildcard is not allowed in Minutes"),
        ("cron(0 10 ?,1 * ? *)", "'?' must be the whole field"),
        # number of fields
        ("cron(0 10 * * ?)", "six required fields"),
        ("cron(0 0 10 * * ? *)", "six required fields"),
        ("cron()", "six required fields"),
        # out of range
        ("cron(60 10 * * ? *)", "Minutes field '60': 60 is out of range 0-59"),
        ("cron(0 24 * * ? *)", "Hours field '24': 24 is out of range 0-23"),
        ("cron(0 10 0 * ? *)", "0 is out of range 1-31"),
        ("cron(0 10 32 * ? *)", "32 is out of range 1-31"),
        ("cron(0 10 * 13 ? *)", "13 is out of range 1-12 or JAN-DEC"),
        ("cron(0 10 ? * 0 *)", "0 is out of range 1-7 or SUN-SAT"),
        ("cron(0 10 ? * 8 *)", "8 is out of range 1-7"),
        ("cron(0 10 * * ? 1969)", "1969 is out of range 1970-2199"),
        ("cron(0 10 * * ? 2200)", "2200 is out of range 1970-2199"),
        ("cron(0 10 * * ? 2020-2300)", "2300 is out of range"),
        ("cron(0 10 32W * ? *)", "32 is out of range"),
        ("cron(0 10 ? * 8L *)", "8 is out of range"),
        ("cron(0 10 ? * 8#1 *)", "8 is out of range"),
        # bad increments
        ("cron(*/0 10 * * ? *)", "increment '0' is not a positive integer"),
        ("cron(0/x 10 * * ? *)", "increment 'X'"),  # fields are upper-cased, as Quartz does
        ("cron(0/ 10 * * ? *)", "increment ''"),
        ("cron(0/60 10 * * ? *)", "increment 60 is larger than 59"),
        ("cron(0 0/24 * * ? *)", "larger than 23"),
        ("cron(0 10 ? * */2 *)", "'/' wildcard is not allowed in Day-of-week"),
        ("cron(0 10 1/2/3 * ? *)", "not a positive integer"),
        # L, W and # misuse
        ("cron(0 10 L,15 * ? *)", "'L' must be the whole field"),
        ("cron(0 10 1-L * ? *)", "'L' must be the whole field"),
        ("cron(0 10 L-3 * ? *)", "L-n"),
        ("cron(0 10 ? * 5L,6L *)", "not part of a list or range"),
        ("cron(0 10 ? * 2-6L *)", "not part of a list or range"),
        ("cron(0 10 1-5W * ? *)", "'W' follows a single day number"),
        ("cron(0 10 1,15W * ? *)", "'W' follows a single day number"),
        ("cron(0 10 W * ? *)", "'W' follows a single day number"),
        ("cron(0 10 ? * 2W *)", "'W' wildcard is not allowed in Day-of-week"),
        ("cron(0 10 * L * ? *)", "six required fields"),
        ("cron(0 10 * * ? L)", "'L' wildcard is not allowed in Year"),
        ("cron(0 10 3#2 * ? *)", "'#' wildcard is not allowed in Day-of-month"),
        ("cron(0 10 ? * 3#1,6#3 *)", "you can define only one expression"),
        ("cron(0 10 ? * 3#6 *)", "'6' after '#' is not 1-5"),
        ("cron(0 10 ? * 3#0 *)", "'0' after '#' is not 1-5"),
        ("cron(0 10 ? * 2-3#1 *)", "'#' takes one day of the week"),
        # names
        ("cron(0 10 ? * FUN *)", "'FUN' is not a value: expected 1-7 or SUN-SAT"),
        ("cron(0 10 * JANUARY ? *)", "'JANUARY' is not a value"),
        ("cron(0 10 ? * JAN *)", "'JAN' is not a value"),
        ("cron(0 10 * MON ? *)", "'MON' is not a value"),
        ("cron(0 TEN * * ? *)", "'TEN' is not a value"),
        # lists and ranges
        ("cron(0 10 1,,2 * ? *)", "an empty item"),
        ("cron(0 10 1- * ? *)", "a value is missing"),
        ("cron(0 10 1-2-3 * ? *)", "'2-3' is not a value"),
        ("cron(0 10 * * ? 2030-2020)", "runs backwards"),
        ("cron(-1 10 * * ? *)", "a value is missing"),
        # the expression itself
        ("Cron(0 10 * * ? *)", "is not rate(value unit), cron(fields) or at("),
        (" cron(0 10 * * ? *)", "is not rate(value unit)"),
        ("cron(0 10 * * ? *", "is not rate(value unit)"),
        ("0 10 * * ? *", "is not rate(value unit)"),
        ("", "is not rate(value unit)"),
    ],
)
def test_cron_refusals(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleExpressionError) as error:
        parse(expression)
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert message.startswith("Parameter ScheduleExpression is not valid. ")
    assert reason in message
    assert error.value.reason in message


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 10 * * ? *)",
        "cron(0 10 ? * * *)",
        "cron(0  10\t* * ?   *)",  # "separated by white space"
        "cron(0 10 ? * mon-fri *)",  # names in any case
        "cron(0 10 lw * ? *)",
        "cron(0 10 ? * L *)",
        "cron(0 10 ? * SAT#5 *)",
        "cron(0 10 31W FEB ? *)",  # never fires, still valid
        "cron(0,1,2 0-23/1 1-31/1 JAN-DEC/1 ? 1970-2199/1)",
    ],
)
def test_cron_acceptances(expression: str) -> None:
    assert isinstance(parse(expression), CronSchedule)


def test_parse_returns_the_right_kind_keeping_the_expression() -> None:
    kinds: list[tuple[str, type[Schedule]]] = [
        ("rate(5 minutes)", RateSchedule),
        ("cron(0 10 * * ? *)", CronSchedule),
        ("at(2026-01-01T00:00:00)", AtSchedule),
    ]
    for expression, kind in kinds:
        schedule = parse(expression)
        assert isinstance(schedule, kind)
        assert schedule.expression == expression
