"""Business-time arithmetic: due times and durations counted only inside business hours.

CONTRACT.md, "SLA and business hours (tickets)": business hours are local wall-clock ranges in an
IANA zone, per weekday, minus holidays (local dates); without hours the clock is calendar time.
Times are epoch seconds (float), like everywhere else in the pipeline.

Why the shape:

* A range is the set of REAL instants whose local wall time lies in it. Across a DST change the
  wall clock jumps, so a range that contains a skipped hour is shorter in real time and one that
  contains a repeated hour is longer (the repeated part may even come back after a later range).
  Each local date is therefore turned into a sorted list of real intervals, using the zone's
  UTC offsets, and cached: SLA due times of many tickets land on the same few days.
* The walk goes date by date over those intervals (never minute stepping), so a due time costs a
  few steps per calendar day it spans. A calendar with hours on at least one weekday always
  terminates: holidays are finitely many, and a weekday range lies in a DST gap on only a few
  dates a year.
* A backward jump across midnight (rare, historical zones) can put a date's repeated hour after
  the next date's first instants, so intervals are released in real-time order only once no
  later date can start before them (``_MAX_OFFSET``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAY = 86_400
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_OFFSET = 26 * 3600
"""Bound on |UTC offset| (real zones stay within -12..+14 h): how far a local date can reach."""

_CACHED_DAYS = 20_000
Range = tuple[int, int]
"""Local seconds since midnight, ``[start, end)``, ``0 <= start < end <= 86400``."""
Interval = tuple[float, float]
"""Real time, epoch seconds, ``[start, end)``."""


def _naive_midnight(day: date) -> int:
    """Local midnight of ``day`` on the naive (wall-clock-as-UTC) timeline."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY


def _offset(zone: ZoneInfo, instant: float) -> int:
    offset = datetime.fromtimestamp(instant, tz=zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _find_change(zone: ZoneInfo, low: int, high: int) -> int:
    """The first second in ``(low, high]`` with the offset at ``high`` (offsets differ there)."""
    target = _offset(zone, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone, middle) == target:
            high = middle
        else:
            low = middle
    return high


def _offset_pieces(zone: ZoneInfo, start: int, end: int) -> list[tuple[int, int, int]]:
    """``(from, to, offset)`` pieces of constant UTC offset covering real ``[start, end)``.

    Zone transitions are months apart, so one found by bisection between two probes a few hours
    apart is the only one there.
    """
    pieces: list[tuple[int, int, int]] = []
    probe_step = 6 * 3600
    low, low_offset = start, _offset(zone, start)
    while low < end:
        high = min(low + probe_step, end)
        high_offset = _offset(zone, high)
        if high_offset != low_offset:
            high = _find_change(zone, low, high)
        pieces.append((low, high, low_offset))
        low, low_offset = high, _offset(zone, high)
    return pieces


def _wall_to_real(
    pieces: Sequence[tuple[int, int, int]], wall_start: int, wall_end: int
) -> list[Interval]:
    """Real instants whose wall time (naive seconds) is in ``[wall_start, wall_end)``."""
    found: list[Interval] = []
    for low, high, offset in pieces:
        start, end = max(low, wall_start - offset), min(high, wall_end - offset)
        if start < end:
            found.append((float(start), float(end)))
    return found


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with touching intervals joined (ranges that meet at midnight become one)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True)
class BusinessCalendar:
    """Weekly business hours in a zone, minus holidays; ``weekly=None`` means 24x7.

    ``weekly`` has 7 entries (Monday first), each a sorted tuple of non-overlapping ranges.
    Validation with line numbers is the policy loader's job (pipeline/domain/sla_policy.py); this only
    refuses what would make the arithmetic wrong or endless.
    """

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    weekly: tuple[tuple[Range, ...], ...] | None = None
    holidays: frozenset[date] = frozenset()
    _days: dict[date, tuple[Interval, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Per-date cache: SLA due times of many tickets land on the same few days."""

    def __post_init__(self) -> None:
        if self.weekly is None:
            return
        if len(self.weekly) != 7:
            raise ValueError("weekly business hours need 7 days, Monday first")
        for ranges in self.weekly:
            previous_end = 0
            for start, end in ranges:
                if not previous_end <= start < end <= DAY:
                    raise ValueError(f"bad or overlapping business hours range {start}-{end}")
                previous_end = end
        if not any(self.weekly):
            raise ValueError("business hours with no hours in the week would never be due")

    @property
    def is_calendar_time(self) -> bool:
        return self.weekly is None

    # -- building blocks ---------------------------------------------------------------------
    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """Real business intervals of local date ``day``, sorted and merged (cached)."""
        found = self._days.get(day)
        if found is None:
            if len(self._days) >= _CACHED_DAYS:
                self._days.clear()
            found = self._days[day] = self._compute_intervals_on(day)
        return found

    def _compute_intervals_on(self, day: date) -> tuple[Interval, ...]:
        assert self.weekly is not None
        ranges = () if day in self.holidays else self.weekly[day.weekday()]
        if not ranges:
            return ()
        midnight = _naive_midnight(day)
        pieces = _offset_pieces(self.zone, midnight - _MAX_OFFSET, midnight + DAY + _MAX_OFFSET)
        real = (
            interval
            for start, end in ranges
            for interval in _wall_to_real(pieces, midnight + start, midnight + end)
        )
        return tuple(_merge(real))

    def intervals_from(self, instant: float) -> Iterator[Interval]:
        """Business intervals in real-time order, clipped to start at ``instant`` (endless)."""
        assert self.weekly is not None
        local_day = datetime.fromtimestamp(instant, tz=self.zone).date()
        day = local_day - timedelta(days=2)  # a backward jump may still reach ``instant``
        pending: list[Interval] = []
        while True:
            for interval in self.intervals_on(day):
                if interval[1] > instant:
                    bisect.insort(pending, (max(interval[0], instant), interval[1]))
            day += timedelta(days=1)
            earliest_later = _naive_midnight(day) - _MAX_OFFSET
            while pending and pending[0][0] <= earliest_later:
                yield pending.pop(0)

    # -- the arithmetic ------------------------------------------------------------------------
    def add(self, start: float, seconds: float) -> float:
        """Due time: the first instant by which ``seconds`` of business time have passed since
        ``start`` (a start outside hours begins counting at the next opening)."""
        if self.weekly is None or seconds <= 0:
            return start + max(seconds, 0.0)
        left = seconds
        for begin, end in self.intervals_from(start):
            if end - begin >= left:
                return begin + left
            left -= end - begin
        raise AssertionError("unreachable: intervals_from is endless")

    def between(self, start: float, end: float) -> float:
        """Business seconds in ``[start, end)``; 0 when ``end <= start``."""
        if end <= start:
            return 0.0
        if self.weekly is None:
            return end - start
        total = 0.0
        for begin, finish in self.intervals_from(start):
            if begin >= end:
                break
            total += min(finish, end) - begin
        return total


def parse_clock(text: str) -> int:
    """``HH:MM`` (``24:00`` allowed) as seconds since midnight; ValueError if malformed."""
    hours, sep, minutes = text.partition(":")
    if not (sep and len(hours) == 2 and len(minutes) == 2 and (hours + minutes).isdigit()):
        raise ValueError(f"{text!r} is not HH:MM")
    value = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or value > DAY:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return value


def format_clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
