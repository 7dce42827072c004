"""Business-time arithmetic against a brute-force oracle that looks at every minute's wall clock.

The oracle knows nothing of offsets or intervals: a minute counts when the local date is not a
holiday and its local wall time lies in one of that weekday's ranges. Calendars are drawn with
ranges on minute boundaries (touching midnight, lunch gaps, DST hours) in zones whose changes fall
on minute boundaries, around real DST switches in both directions.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain.business_time import BusinessCalendar, parse_clock

MINUTE = 60
HOUR = 3600
BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_FIVE = ((9 * HOUR, 17 * HOUR),)
WEEKDAYS_9_TO_5 = (NINE_TO_FIVE,) * 5 + ((), ())

# (zone, a local date with a DST switch) in both directions; Lord Howe moves by 30 minutes.
SWITCHES = [
    ("Europe/Berlin", date(2026, 3, 29)),
    ("Europe/Berlin", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)),
    ("America/New_York", date(2026, 11, 1)),
    ("Australia/Lord_Howe", date(2026, 4, 5)),
    ("Australia/Lord_Howe", date(2026, 10, 4)),
    ("Asia/Kolkata", date(2026, 6, 1)),
    ("UTC", date(2026, 1, 1)),
]
ORACLE_SPAN = 12 * 86_400
"""How far past the start the oracle looks (drawn targets fit inside it)."""


def at(zone: ZoneInfo, *fields: int) -> float:
    return datetime(*fields, tzinfo=zone).timestamp()


class MinuteOracle:
    """Business minutes of ``calendar`` from ``start`` on, by reading every minute's wall time."""

    def __init__(self, calendar: BusinessCalendar, start: float, span: float) -> None:
        assert start % MINUTE == 0 and calendar.weekly is not None
        self.start = start
        self.business = [
            self._is_business(calendar, start + index * MINUTE)
            for index in range(int(span // MINUTE))
        ]

    @staticmethod
    def _is_business(calendar: BusinessCalendar, minute: float) -> bool:
        assert calendar.weekly is not None
        wall = datetime.fromtimestamp(minute, tz=calendar.zone)
        if wall.date() in calendar.holidays:
            return False
        second_of_day = wall.hour * HOUR + wall.minute * MINUTE
        ranges = calendar.weekly[wall.weekday()]
        return any(start <= second_of_day < end for start, end in ranges)

    def between(self, end: float) -> float:
        return MINUTE * sum(self.business[: int((end - self.start) // MINUTE)])

    def total(self) -> float:
        return MINUTE * sum(self.business)

    def due(self, seconds: float) -> float:
        counted = 0.0
        for index, business in enumerate(self.business):
            if business:
                if counted + MINUTE >= seconds:
                    return self.start + index * MINUTE + (seconds - counted)
                counted += MINUTE
        raise AssertionError("target beyond the oracle's span")


DST_PRONE_DAYS = [
    ((0, 86_400),),
    ((HOUR, 4 * HOUR),),
    ((2 * HOUR, 3 * HOUR), (5 * HOUR, 6 * HOUR)),
    ((0, 2 * HOUR), (2 * HOUR + 1800, 7 * HOUR), (20 * HOUR, 86_400)),
]
"""Ranges over the small hours, where the switches happen."""
_INTERESTING_MINUTES = [0, 60, 90, 120, 150, 180, 540, 720, 780, 1020, 1380, 1440]


@st.composite
def day_ranges(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    """Sorted ranges on minute boundaries; neighbours may touch (a lunch gap may be zero)."""
    points = draw(
        st.lists(
            st.one_of(st.sampled_from(_INTERESTING_MINUTES), st.integers(0, 1440)),
            max_size=6,
        )
    )
    points.sort()
    ranges = []
    previous_end = 0
    for start, end in zip(points[::2], points[1::2], strict=False):
        if start < end and start >= previous_end:
            ranges.append((start * MINUTE, end * MINUTE))
            previous_end = end
    return tuple(ranges)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[BusinessCalendar, float]:
    """A calendar around a DST switch of its zone, and a minute-aligned start near it."""
    zone_name, switch_day = draw(st.sampled_from(SWITCHES))
    zone = ZoneInfo(zone_name)
    if draw(st.booleans()):  # the same hours every day: the switch day surely has some
        weekly = (draw(st.one_of(st.sampled_from(DST_PRONE_DAYS), day_ranges())),) * 7
    else:
        weekly = tuple(draw(day_ranges()) for _ in range(7))
    if not any(weekly):
        weekly = (draw(st.sampled_from([NINE_TO_FIVE, ((0, 86_400),), ((23 * HOUR, 86_400),)])),)
        weekly += ((),) * 6
    window = [switch_day + timedelta(days=offset) for offset in range(-8, 4)]
    holidays = frozenset(draw(st.lists(st.sampled_from(window), max_size=4)))
    midnight = datetime.combine(switch_day, datetime.min.time(), tzinfo=zone).timestamp()
    start = midnight + MINUTE * draw(st.integers(-8 * 1440, 2 * 1440))
    start -= start % MINUTE
    return BusinessCalendar(zone=zone, weekly=weekly, holidays=holidays), start


ORACLE_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@ORACLE_SETTINGS
@given(scenarios(), st.integers(0, ORACLE_SPAN // MINUTE))
def test_business_seconds_match_the_minute_oracle(scenario, minutes_later):
    calendar, start = scenario
    oracle = MinuteOracle(calendar, start, ORACLE_SPAN)
    end = start + minutes_later * MINUTE
    assert calendar.between(start, end) == oracle.between(end)


@ORACLE_SETTINGS
@given(scenarios(), st.floats(0.0, 1.0, exclude_min=True), st.integers(0, 59))
def test_due_time_matches_the_minute_oracle(scenario, share, extra_seconds):
    calendar, start = scenario
    oracle = MinuteOracle(calendar, start, ORACLE_SPAN)
    available = oracle.total()
    seconds = max(1.0, min(available, round(available * share) + extra_seconds))
    if available == 0:
        return  # nothing to count within the span (e.g. only holidays); other tests cover it
    due = calendar.add(start, seconds)
    assert due == oracle.due(seconds)
    assert calendar.between(start, due) == seconds


@settings(max_examples=40, deadline=None)
@given(scenarios(), st.integers(-3, 12))
def test_intervals_of_a_day_are_sorted_disjoint_and_on_that_date(scenario, day_offset):
    calendar, start = scenario
    day = datetime.fromtimestamp(start, tz=calendar.zone).date() + timedelta(days=day_offset)
    intervals = calendar.intervals_on(day)
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert end < next_start  # touching intervals are merged
    for begin, end in intervals:
        assert begin < end
        assert datetime.fromtimestamp(begin, tz=calendar.zone).date() == day
        assert datetime.fromtimestamp(end - 1, tz=calendar.zone).date() == day


def test_urgent_ticket_opened_friday_evening_is_due_monday_morning():
    calendar = BusinessCalendar(zone=BERLIN, weekly=WEEKDAYS_9_TO_5)
    opened = at(BERLIN, 2026, 3, 27, 18, 0)  # Friday after hours; DST starts on Sunday
    assert calendar.add(opened, 900) == at(BERLIN, 2026, 3, 30, 9, 15)
    assert calendar.between(opened, at(BERLIN, 2026, 3, 30, 10, 0)) == HOUR


def test_lunch_gap_and_holiday_are_skipped():
    split_day = ((9 * HOUR, 12 * HOUR), (13 * HOUR, 17 * HOUR))
    calendar = BusinessCalendar(
        zone=BERLIN, weekly=(split_day,) * 5 + ((), ()), holidays=frozenset({date(2026, 12, 25)})
    )
    opened = at(BERLIN, 2026, 12, 24, 11, 0)  # Thursday; Friday is a holiday
    assert calendar.add(opened, 2 * HOUR) == at(BERLIN, 2026, 12, 24, 14, 0)
    assert calendar.add(opened, 7 * HOUR) == at(BERLIN, 2026, 12, 28, 11, 0)


@pytest.mark.parametrize(
    ("day", "real_hours"),
    [(date(2026, 3, 29), 2), (date(2026, 10, 25), 4), (date(2026, 10, 26), 3)],
)
def test_dst_changes_shorten_or_lengthen_a_wall_clock_range(day, real_hours):
    calendar = BusinessCalendar(zone=BERLIN, weekly=(((1 * HOUR, 4 * HOUR),),) * 7)
    intervals = calendar.intervals_on(day)
    assert sum(end - begin for begin, end in intervals) == real_hours * HOUR


def test_repeated_hour_counts_twice_even_when_split_by_another_range():
    # 02:30-03:00 happens twice on the fall-back night; 02:00-02:30 (not business) in between
    calendar = BusinessCalendar(zone=BERLIN, weekly=(((9000, 3 * HOUR),),) * 7)
    intervals = calendar.intervals_on(date(2026, 10, 25))
    assert [end - begin for begin, end in intervals] == [1800, 1800]
    assert intervals[1][0] - intervals[0][1] == 1800


def test_ranges_touching_midnight_join_across_days():
    late, early = ((22 * HOUR, 86_400),), ((0, 2 * HOUR),)
    calendar = BusinessCalendar(zone=BERLIN, weekly=(late, early, (), (), (), (), ()))
    monday_22 = at(BERLIN, 2026, 6, 1, 22, 0)
    assert calendar.add(monday_22, 3 * HOUR) == at(BERLIN, 2026, 6, 2, 1, 0)
    assert calendar.between(monday_22, at(BERLIN, 2026, 6, 8, 0, 0)) == 4 * HOUR


def test_calendar_time_without_business_hours():
    calendar = BusinessCalendar()
    assert calendar.is_calendar_time
    assert calendar.add(1000.5, 900) == 1900.5
    assert calendar.between(1000.0, 4600.0) == 3600.0
    assert calendar.between(4600.0, 1000.0) == 0.0


def test_a_week_without_hours_is_refused_instead_of_looping():
    with pytest.raises(ValueError, match="never be due"):
        BusinessCalendar(zone=BERLIN, weekly=((),) * 7)


def test_a_long_target_over_many_holidays_terminates_quickly():
    holidays = frozenset(date(2026, 1, 1) + timedelta(days=n) for n in range(300))
    calendar = BusinessCalendar(zone=BERLIN, weekly=WEEKDAYS_9_TO_5, holidays=holidays)
    due = calendar.add(at(BERLIN, 2026, 1, 1, 0, 0), 8 * HOUR)
    assert due == at(BERLIN, 2026, 10, 28, 17, 0)  # the first working day after them


@pytest.mark.parametrize("text", ["9:00", "09:60", "24:01", "25:00", "ab:cd", "0900", ""])
def test_parse_clock_refuses_malformed_times(text):
    with pytest.raises(ValueError):
        parse_clock(text)


def test_parse_clock_accepts_midnight_at_both_ends():
    assert parse_clock("00:00") == 0
    assert parse_clock("24:00") == 86_400
    assert parse_clock("17:30") == 17 * HOUR + 1800
