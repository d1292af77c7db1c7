"""AWS schedule expressions, ``rate()``, ``cron()`` and ``at()``, parsed and evaluated as AWS does.

Pure: no I/O, no clock. ``parse(expression)`` returns a :class:`Schedule`;
``Schedule.next_after(after, tz)`` is the first fire time strictly after ``after`` and
``Schedule.times_between(start, end, tz)`` the fire times in ``(start, end]`` (what a
source needs to find the times it missed while it was down).

Sources (AWS documentation; quoted words are AWS's):

* [EB] Amazon EventBridge User Guide, "Creating an Amazon EventBridge rule that runs on a
  schedule" (``eb-create-rule-schedule``): the cron field table, the wildcards, the
  limitations and the examples table; the rate singular/plural limitation.
* [EBS] EventBridge Scheduler User Guide, "Schedule types on EventBridge Scheduler"
  (``schedule-types``): rate-based, cron-based and one-time (``at``) schedules, time
  zones, and the section "Daylight savings time on EventBridge Scheduler".

``rate(value unit)``
    ``value`` is a positive integer [EB: "A positive number"]; ``unit`` is ``minute`` /
    ``hour`` / ``day`` when ``value`` is 1 and ``minutes`` / ``hours`` / ``days``
    otherwise [EB, Limitations: "If the value is equal to 1, then the unit must be
    singular. If the value is greater than 1, the unit must be plural. For example,
    rate(1 hours) and rate(5 hour) aren't valid"]. (The [EBS] page lists only the plural
    units and writes ``rate(1 days)`` once; the explicit rule of [EB] is the one applied.)

    trigger-bridge extension, not AWS: ``second`` / ``seconds`` (``rate(2 seconds)``,
    ``rate(1 second)``, same singular/plural rule) is accepted only with
    ``parse(..., allow_seconds=True)``; AWS has no sub-minute schedules.

    A rate fires at ``anchor + k * period`` for k = 0, 1, 2, ... in elapsed time: the
    period is a fixed duration, so ``rate(1 day)`` is 24 hours even across a 23- or
    25-hour daylight-saving day [EBS: "days represents a 24-hour duration on the clock
    ... EventBridge Scheduler still evaluates the rate expression 24 hours after the
    schedule's last invocation"]. The anchor is the schedule's first occurrence: AWS
    uses the schedule's ``StartDate``, or, without one, "starts invoking the target
    immediately" [EBS]; an EventBridge rule's rate "starts when you create the
    scheduled event rule" [EB]. So the caller passes the schedule's start: its
    configured start time, else the time the schedule was first created, kept durably
    so that a restart continues the same grid instead of re-anchoring at process start.
    The time zone only formats the result.

``cron(Minutes Hours Day-of-month Month Day-of-week Year)``
    Six fields separated by white space [EB: "six required fields"]. (The [EBS] page
    calls the year optional; [EB] and the [EBS] syntax line show it, and five fields
    are refused here.) Values and wildcards per field [EB table]::

        Minutes       0-59              , - * /
        Hours         0-23              , - * /
        Day-of-month  1-31              , - * ? / L W
        Month         1-12 or JAN-DEC   , - * /
        Day-of-week   1-7 or SUN-SAT    , - * ? L #
        Year          1970-2199         , - * /

    A wildcard outside its field's list is refused (so no ``/`` in Day-of-week, no
    ``?`` outside the two day fields). ``,`` lists, ``-`` ranges, ``*`` all values,
    ``/`` increments (``1/10`` in Minutes is 1, 11, 21, ...: "every tenth minute,
    starting from the first minute"; ``*/5`` starts at the field's minimum; ``a-b/5``
    steps within the range). Day-of-week 1 is Sunday and 7 Saturday ("3#2 ... the 3
    refers to Tuesday because it is the third day of each week").

    * ``?``: exactly one of Day-of-month and Day-of-week is ``?`` [EB, Limitations:
      "You can't specify the Day-of-month and Day-of-week fields in the same cron
      expression. If you specify a value or a * (asterisk) in one of the fields, you
      must use a ? (question mark) in the other"].
    * ``L``: "The L wildcard in the Day-of-month or Day-of-week fields specifies the last
      day of the month or week" [EB]: ``L`` in Day-of-month is the month's last day;
      ``L`` alone in Day-of-week is the week's last day, Saturday (7); ``6L`` is the last
      Friday of the month ([EB] example ``cron(15 10 ? * 6L 2019-2022)``, "the last
      Friday of each month").
    * ``W``: "3W specifies the weekday closest to the third day of the month" [EB].
    * ``#``: ``3#2`` is the second Tuesday of the month; "If you use a '#' character, you
      can define only one expression in the day-of-week field. For example, "3#1,6#3" is
      not valid" [EB].

    Where AWS's pages are silent, this module follows the Quartz scheduler's cron
    dialect, which AWS's matches field for field (same table, same ``L W # ?``, same
    1970-2199 years); each such choice:

    * ``W`` never leaves the month: ``1W`` on a Saturday 1st is Monday the 3rd, a
      Sunday last day gives the Friday before; ``W`` takes one day number, no list or
      range; ``nW`` fires in no month that lacks day n (``31W`` in April).
    * ``LW`` (the month's last weekday) is accepted; third-party reports say AWS's
      console accepts it, and Quartz defines it.
    * ``L``, ``LW``, ``nW``, ``nL`` and ``n#k`` must be the whole field (no lists or
      ranges); ``#`` takes k in 1-5 and a month without a k-th such day has no fire.
      Offsets ``L-n`` are refused: AWS does not document them.
    * A range whose end is below its start wraps around the field's maximum: ``20-2``
      in Hours is 20-23 and 0-2 ([EB] example ``cron(0/30 20-2 ? * MON-FRI *)``,
      "between 10:00 pm on the starting day to 2:00 am on the following day"); the
      fields are still matched one by one, so that example also fires at 00:00-02:30
      on Monday to Friday. Year ranges must not run backwards.
    * Increments: a positive integer no larger than the field's maximum (59, 23, 31,
      12; any for Year), as Quartz checks.
    * Month and day names are three letters; they, ``L`` and ``W`` are read in any case
      (``mon-fri``, ``lw``): Quartz upper-cases the expression, and third-party reports
      say AWS accepts mixed case (error messages quote the field upper-cased). Numbers
      may have leading zeros. The keywords ``rate``/``cron``/``at`` and rate units are
      lower case, as documented.
    * An expression whose days can never occur (``cron(0 0 30 2 ? *)``) is valid and
      never fires; after 2199 no cron fires.

``at(yyyy-mm-ddThh:mm:ss)``
    EventBridge Scheduler's one-time schedule [EBS]: that wall-clock time in the
    schedule's time zone, once.

Time zones and daylight saving time
    ``cron`` and ``at`` are evaluated in the schedule's time zone (an IANA zone through
    :mod:`zoneinfo`) [EBS: "EventBridge Scheduler uses the Time Zone Database maintained
    by the Internet Assigned Numbers Authority (IANA)"]. [EBS, "Daylight savings time on
    EventBridge Scheduler"]: "When time shifts forward in the Spring, if a cron
    expression falls on a non-existent date and time, your schedule invocation is
    skipped. When time shifts backwards in the Fall, your schedule runs only once and
    does not repeat its invocation." Its example, ``cron(30 2 * * ? *)``: on the
    spring-forward day there is no run ("resumes running the schedule normally the
    following day"); on the fall-back day it "runs the schedule only once at 2:30 a.m.
    before the shift occurs".

    So a cron time inside the spring-forward gap is skipped (no run that day; not moved
    to 03:00), and a cron time that happens twice fires at its first occurrence only
    (the earlier UTC offset). This applies to every matching minute: ``*/15`` fires at
    01:00, 01:15, 01:30 and 01:45 before the New York fall-back and next at 02:00 EST,
    an hour and a quarter later.

    For ``at()`` the page says nothing. Chosen here: a repeated time fires at its first
    occurrence (as cron does); a non-existent time fires at the same wall time moved
    forward by the gap, ``02:30`` -> ``03:30`` in a 02:00->03:00 zone (what
    ``zoneinfo`` with ``fold=0`` and Java's ``ZonedDateTime.of`` give), rather than
    never firing a one-time schedule.

Precision: cron fires on whole minutes [EBS: "60 second precision"]; rate and at fire at
the exact computed instant; the caller decides how late within the minute it invokes.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal

__all__ = [
    "INVALID",
    "AtSchedule",
    "CronSchedule",
    "RateSchedule",
    "Schedule",
    "ScheduleExpressionError",
    "parse",
]

INVALID = "Parameter ScheduleExpression is not valid."
"""AWS's own message for any refused schedule expression (a ValidationException)."""

_MINUTE = timedelta(minutes=1)


class ScheduleExpressionError(ValueError):
    """A schedule expression AWS would refuse.

    The message is AWS's generic ``Parameter ScheduleExpression is not valid.`` followed
    by the specific reason (which field, what is wrong); ``reason`` holds the latter.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{INVALID} {reason}")


# --------------------------------------------------------------------------- schedules


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


class Schedule(ABC):
    """A parsed schedule expression."""

    expression: str

    @abstractmethod
    def next_after(
        self, after: datetime, tz: tzinfo, *, anchor: datetime | None = None
    ) -> datetime | None:
        """The first fire time strictly after ``after``, in ``tz``; None if there is none.

        ``after`` is an aware datetime (any zone); ``tz`` is the schedule's time zone, a
        :class:`zoneinfo.ZoneInfo` (any PEP 495 tzinfo works, e.g. ``datetime.UTC``).
        ``anchor`` is required by ``rate()`` schedules only (their first occurrence;
        see the module docstring) and ignored by the others. None: an ``at()`` not
        after ``after``, or a cron whose years ran out.
        """

    def times_between(
        self, start: datetime, end: datetime, tz: tzinfo, *, anchor: datetime | None = None
    ) -> Iterator[datetime]:
        """The fire times in ``(start, end]``, in order, each in ``tz``.

        Bounded by ``end``; lazy, so a caller can also cap the count with
        :func:`itertools.islice` (a long outage of a ``rate(1 minute)``).
        """
        _require_aware("start", start)
        _require_aware("end", end)
        end_utc = end.astimezone(UTC)
        fire = self.next_after(start, tz, anchor=anchor)
        while fire is not None and fire.astimezone(UTC) <= end_utc:
            yield fire
            fire = self.next_after(fire, tz, anchor=anchor)


_Unit = Literal["second", "minute", "hour", "day"]
_UNITS: dict[str, _Unit] = {"second": "second", "minute": "minute", "hour": "hour", "day": "day"}
_UNIT_SECONDS: dict[_Unit, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class RateSchedule(Schedule):
    """``rate(value unit)``: every ``period``, counted from the anchor."""

    expression: str
    value: int
    unit: _Unit

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.value * _UNIT_SECONDS[self.unit])

    def next_after(
        self, after: datetime, tz: tzinfo, *, anchor: datetime | None = None
    ) -> datetime | None:
        """``anchor + k * period`` (k >= 0), the first strictly after ``after``.

        ``anchor`` is required: the schedule's start (its configured start time, else
        the time it was first created, stored durably). Elapsed-time arithmetic in UTC,
        so daylight-saving shifts do not move it.
        """
        _require_aware("after", after)
        if anchor is None:
            raise ValueError(
                f"{self.expression} fires at anchor + k * {self.period}: pass anchor=, "
                "the schedule's start (configured, else its first creation time)"
            )
        _require_aware("anchor", anchor)
        first = anchor.astimezone(UTC)
        now = after.astimezone(UTC)
        if now < first:
            return first.astimezone(tz)
        period = self.period
        try:
            fire = first + ((now - first) // period + 1) * period
        except OverflowError:
            return None
        return fire.astimezone(tz)


@dataclass(frozen=True)
class AtSchedule(Schedule):
    """``at(yyyy-mm-ddThh:mm:ss)``: once, at that wall-clock time in the schedule's zone."""

    expression: str
    when: datetime  # naive: a wall-clock time, read in the schedule's time zone

    def fire_time(self, tz: tzinfo) -> datetime:
        """The instant, in ``tz``: a repeated time's first occurrence; a time in a
        spring-forward gap moved forward by the gap (a choice: AWS documents neither)."""
        return self.when.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)

    def next_after(
        self, after: datetime, tz: tzinfo, *, anchor: datetime | None = None
    ) -> datetime | None:
        _require_aware("after", after)
        fire = self.fire_time(tz)
        return fire if fire.astimezone(UTC) > after.astimezone(UTC) else None


_DayKind = Literal[
    "days",  # Day-of-month numbers (also '*')
    "last",  # L
    "last_weekday",  # LW
    "nearest_weekday",  # nW
    "weekdays",  # Day-of-week numbers (also '*')
    "last_of_week_day",  # nL
    "nth_week_day",  # n#k
]


@dataclass(frozen=True)
class _DayRule:
    """Which days of a month the non-``?`` day field selects."""

    kind: _DayKind
    values: tuple[int, ...] = ()  # days of month, or days of week (1 = SUN .. 7 = SAT)
    day: int = 0  # the n of nW, nL, n#k
    nth: int = 0  # the k of n#k

    def days(self, year: int, month: int) -> list[int]:
        """The selected days of ``year``-``month``, ascending."""
        last = calendar.monthrange(year, month)[1]
        if self.kind == "days":
            return [d for d in self.values if d <= last]
        if self.kind == "last":
            return [last]
        if self.kind == "last_weekday":
            return [_nearest_weekday(year, month, last, last)]
        if self.kind == "nearest_weekday":
            return [_nearest_weekday(year, month, self.day, last)] if self.day <= last else []
        first_dow = _aws_weekday(date(year, month, 1))
        if self.kind == "weekdays":
            wanted = set(self.values)
            return [d for d in range(1, last + 1) if (first_dow + d - 2) % 7 + 1 in wanted]
        if self.kind == "last_of_week_day":
            last_dow = _aws_weekday(date(year, month, last))
            return [last - (last_dow - self.day) % 7]
        # nth_week_day
        day = 1 + (self.day - first_dow) % 7 + 7 * (self.nth - 1)
        return [day] if day <= last else []


def _aws_weekday(day: date) -> int:
    """1 = Sunday .. 7 = Saturday, as in AWS's Day-of-week field."""
    return (day.weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """The weekday (Mon-Fri) nearest ``day``, without leaving the month."""
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: the Friday before, or Monday the 3rd for the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before for the last day
        return day + 1 if day < last else day - 2
    return day


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """``cron(Minutes Hours Day-of-month Month Day-of-week Year)``, in the schedule's zone."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    years: tuple[int, ...]
    day_rule: _DayRule

    def next_after(
        self, after: datetime, tz: tzinfo, *, anchor: datetime | None = None
    ) -> datetime | None:
        _require_aware("after", after)
        after_utc = after.astimezone(UTC)
        wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        # Wall-clock times resolved with fold=0, minus the non-existent ones, map to
        # instants in increasing order; so the answer is the first matching wall time
        # from after's own minute on whose instant is later than after. The loop only
        # repeats across a spring-forward gap or when after lies in the second pass of
        # a repeated hour: at most that many matching minutes.
        while True:
            match = self._next_wall(wall)
            if match is None:
                return None
            fire = _existing(match, tz)
            if fire is not None and fire.astimezone(UTC) > after_utc:
                return fire
            wall = match + _MINUTE

    def _next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall-clock minute at or after ``start`` (naive), or None.

        Walks year -> month -> day -> hour -> minute over the sorted value lists,
        jumping straight to the next candidate value of each field.
        """
        months, hours, minutes = self.months, self.hours, self.minutes
        for year in self.years[bisect_left(self.years, start.year) :]:
            same = year == start.year
            for month in months[bisect_left(months, start.month if same else 1) :]:
                same = same and month == start.month
                days = self.day_rule.days(year, month)
                for day in days[bisect_left(days, start.day if same else 1) :]:
                    same = same and day == start.day
                    for hour in hours[bisect_left(hours, start.hour if same else 0) :]:
                        same = same and hour == start.hour
                        i = bisect_left(minutes, start.minute if same else 0)
                        if i < len(minutes):
                            return datetime(year, month, day, hour, minutes[i])
                        same = False
                    same = False
                same = False
        return None


def _existing(wall: datetime, tz: tzinfo) -> datetime | None:
    """``wall`` in ``tz`` at its first occurrence, or None if the clock skips it."""
    fire = wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)
    return fire if fire.replace(tzinfo=None) == wall else None


# --------------------------------------------------------------------------- parsing

_EXPRESSION = re.compile(r"(rate|cron|at)\((.*)\)", re.DOTALL)


def parse(expression: str, *, allow_seconds: bool = False) -> Schedule:
    """Parse ``rate(...)``, ``cron(...)`` or ``at(...)``; raise ScheduleExpressionError.

    ``allow_seconds=True`` accepts the ``second``/``seconds`` rate unit, a trigger-bridge
    extension that AWS does not have.
    """
    if not isinstance(expression, str):
        raise ScheduleExpressionError(f"expected a string, got {type(expression).__name__}")
    found = _EXPRESSION.fullmatch(expression)
    if found is None:
        raise ScheduleExpressionError(
            f"{expression!r} is not rate(value unit), cron(fields) or at(yyyy-mm-ddThh:mm:ss)"
        )
    kind, body = found.group(1), found.group(2)
    if kind == "rate":
        return _parse_rate(expression, body, allow_seconds)
    if kind == "cron":
        return _parse_cron(expression, body)
    return _parse_at(expression, body)


def _parse_rate(expression: str, body: str, allow_seconds: bool) -> RateSchedule:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleExpressionError(
            f"{expression}: a rate expression has two fields, value and unit, got {len(parts)}"
        )
    value_text, unit = parts
    if not value_text.isascii() or not value_text.isdigit() or int(value_text) < 1:
        raise ScheduleExpressionError(
            f"{expression}: the value {value_text!r} is not a positive integer"
        )
    value = int(value_text)
    units = ["minute", "hour", "day"] + (["second"] if allow_seconds else [])
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in units:
        valid = " | ".join(f"{u} | {u}s" for u in units)
        hint = (
            " (second/seconds is a trigger-bridge extension, off here)"
            if singular == "second"
            else ""
        )
        raise ScheduleExpressionError(
            f"{expression}: the unit {unit!r} is not one of {valid}{hint}"
        )
    if value == 1 and unit != singular:
        raise ScheduleExpressionError(
            f"{expression}: if the value is equal to 1, then the unit must be singular "
            f"(rate(1 {singular}))"
        )
    if value > 1 and unit == singular:
        raise ScheduleExpressionError(
            f"{expression}: if the value is greater than 1, the unit must be plural "
            f"(rate({value} {singular}s))"
        )
    return RateSchedule(expression, value, _UNITS[singular])


_AT_BODY = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", re.ASCII)


def _parse_at(expression: str, body: str) -> AtSchedule:
    found = _AT_BODY.fullmatch(body)
    if found is None:
        raise ScheduleExpressionError(
            f"{expression}: an at expression is at(yyyy-mm-ddThh:mm:ss), got {body!r}"
        )
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    try:
        when = datetime(year, month, day, hour, minute, second)
    except ValueError as error:
        raise ScheduleExpressionError(
            f"{expression}: {body} is not a date and time: {error}"
        ) from None
    return AtSchedule(expression, when)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    wildcards: str
    names: tuple[str, ...] = ()  # names for low, low + 1, ...
    max_step: int | None = None  # None: any positive increment

    def describe(self) -> str:
        names = f" or {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"{self.low}-{self.high}{names}"


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_MINUTES = _Field("Minutes", 0, 59, ",-*/", max_step=59)
_HOURS = _Field("Hours", 0, 23, ",-*/", max_step=23)
_DAY_OF_MONTH = _Field("Day-of-month", 1, 31, ",-*?/LW", max_step=31)
_MONTH = _Field("Month", 1, 12, ",-*/", _MONTH_NAMES, max_step=12)
_DAY_OF_WEEK = _Field("Day-of-week", 1, 7, ",-*?L#", _DAY_NAMES)
_YEAR = _Field("Year", 1970, 2199, ",-*/")

_FIELD_ORDER = "Minutes Hours Day-of-month Month Day-of-week Year"
_ALL_SPECIALS = ",-*?/LW#"
_NUMBER = re.compile(r"[0-9]+", re.ASCII)


def _parse_cron(expression: str, body: str) -> CronSchedule:
    parts = body.split()
    if len(parts) != 6:
        raise ScheduleExpressionError(
            f"{expression}: a cron expression has six required fields ({_FIELD_ORDER}), "
            f"got {len(parts)}"
        )
    parts = [part.upper() for part in parts]  # names and L/W any case, as Quartz does
    minute, hour, dom, month, dow, year = parts
    for field, text in zip(
        (_MINUTES, _HOURS, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK, _YEAR), parts, strict=True
    ):
        _check_wildcards(field, text)
    if dom == "?" and dow == "?":
        raise ScheduleExpressionError(
            f"{expression}: Day-of-month and Day-of-week are both '?'; use '?' in only "
            "one of them and give the days in the other"
        )
    if dom != "?" and dow != "?":
        raise ScheduleExpressionError(
            f"{expression}: Day-of-month {dom!r} and Day-of-week {dow!r}: you can't specify "
            "the Day-of-month and Day-of-week fields in the same cron expression. If you "
            "specify a value (or a *) in one of the fields, you must use a ? in the other"
        )
    day_rule = _parse_day_of_month(dom) if dow == "?" else _parse_day_of_week(dow)
    return CronSchedule(
        expression=expression,
        minutes=_parse_list(_MINUTES, minute),
        hours=_parse_list(_HOURS, hour),
        months=_parse_list(_MONTH, month),
        years=_parse_list(_YEAR, year),
        day_rule=day_rule,
    )


def _fail(field: _Field, text: str, problem: str) -> ScheduleExpressionError:
    return ScheduleExpressionError(f"{field.name} field {text!r}: {problem}")


def _check_wildcards(field: _Field, text: str) -> None:
    bare = text
    for name in field.names:  # JUL holds an L, WED a W
        bare = bare.replace(name, "")
    for char in _ALL_SPECIALS:
        if char in bare and char not in field.wildcards:
            allowed = " ".join(field.wildcards)
            raise _fail(
                field,
                text,
                f"the {char!r} wildcard is not allowed in {field.name} (allowed: {allowed})",
            )
    if "?" in text and text != "?":
        raise _fail(field, text, "'?' must be the whole field")


def _value(field: _Field, text: str, whole: str) -> int:
    """One number or (where the field has them) name, within the field's range."""
    if _NUMBER.fullmatch(text):
        number = int(text)
        if not field.low <= number <= field.high:
            raise _fail(field, whole, f"{number} is out of range {field.describe()}")
        return number
    if text in field.names:
        return field.low + field.names.index(text)
    if text == "":
        raise _fail(field, whole, "a value is missing")
    raise _fail(field, whole, f"{text!r} is not a value: expected {field.describe()}")


def _parse_list(field: _Field, text: str) -> tuple[int, ...]:
    """``*``, values, ranges ``a-b`` (wrapping if b < a), increments ``x/n``, lists."""
    values: set[int] = set()
    for item in text.split(","):
        if item == "":
            raise _fail(field, text, "an empty item in the list")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) < 1:
                raise _fail(field, text, f"the increment {step_text!r} is not a positive integer")
            step = int(step_text)
            if field.max_step is not None and step > field.max_step:
                raise _fail(field, text, f"the increment {step} is larger than {field.max_step}")
        if base == "*":
            start, end = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(field, first, text), _value(field, last, text)
            if end < start and field is _YEAR:
                raise _fail(field, text, f"the range {base} runs backwards")
        else:
            start = _value(field, base, text)
            end = field.high if slash else start
        if start <= end:
            values.update(range(start, end + 1, step))
        else:  # wraps past the maximum: 20-2 in Hours is 20-23 and 0-2
            span = field.high - field.low + 1
            values.update(
                field.low + (v - field.low) % span for v in range(start, end + span + 1, step)
            )
    return tuple(sorted(values))


def _parse_day_of_month(text: str) -> _DayRule:
    field = _DAY_OF_MONTH
    if text == "L":
        return _DayRule("last")
    if text == "LW":
        return _DayRule("last_weekday")
    if "L" in text:
        if text.startswith("L-"):
            raise _fail(field, text, "offsets from the last day (L-n) are not supported by AWS")
        raise _fail(
            field, text, "'L' must be the whole field (L or LW), not part of a list or range"
        )
    if "W" in text:
        if not text.endswith("W") or not _NUMBER.fullmatch(text[:-1]):
            raise _fail(field, text, "'W' follows a single day number (3W), not a list or range")
        return _DayRule("nearest_weekday", day=_value(field, text[:-1], text))
    return _DayRule("days", values=_parse_list(field, text))


def _parse_day_of_week(text: str) -> _DayRule:
    field = _DAY_OF_WEEK
    if text == "L":  # the last day of the week: Saturday
        return _DayRule("weekdays", values=(7,))
    if "#" in text:
        if "," in text:
            raise _fail(
                field,
                text,
                "if you use a '#' character, you can define only one expression in the "
                "day-of-week field",
            )
        day_text, _, nth_text = text.partition("#")
        if "-" in day_text or "L" in text:
            raise _fail(field, text, "'#' takes one day of the week and a number: 3#2")
        if not _NUMBER.fullmatch(nth_text) or not 1 <= int(nth_text) <= 5:
            raise _fail(field, text, f"the occurrence {nth_text!r} after '#' is not 1-5")
        return _DayRule("nth_week_day", day=_value(field, day_text, text), nth=int(nth_text))
    if "L" in text:
        if not text.endswith("L") or any(c in text for c in ",-*"):
            raise _fail(
                field,
                text,
                "'L' is the whole field or follows a single day of the week (6L), "
                "not part of a list or range",
            )
        return _DayRule("last_of_week_day", day=_value(field, text[:-1], text))
    return _DayRule("weekdays", values=_parse_list(field, text))
