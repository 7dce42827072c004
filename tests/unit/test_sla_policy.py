"""The SLA policy file: a good one loads, every bad one is refused naming the file and the line."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from pipeline.domain.sla_policy import (
    DEFAULT_POLICY,
    PRIORITIES,
    PolicyError,
    check_policy_file,
    load_policy,
)

TARGETS = """\
targets:
  first_response: {urgent: 900, high: 3600, normal: 14400, low: 28800}
  resolution:     {urgent: 14400, high: 28800, normal: 86400, low: 259200}
"""
GOOD = (
    """\
timezone: Europe/Berlin
business_hours:
  mon: ["09:00-12:00", "13:00-17:00"]
  tue: ["09:00-17:00"]
  sat: []
  sun: ["22:00-24:00"]
holidays: ["2026-12-25"]
"""
    + TARGETS
)
BERLIN = ZoneInfo("Europe/Berlin")


def write(tmp_path, text: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_policy_loads_with_business_time(tmp_path):
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.business_hours_set
    assert policy.calendar.zone.key == "Europe/Berlin"
    assert policy.calendar.holidays == frozenset({date(2026, 12, 25)})
    opened = datetime(2026, 6, 1, 11, 30, tzinfo=BERLIN).timestamp()  # a Monday
    # 30 min before lunch, 30 min after it
    assert policy.due("first_response", "high", opened) == opened + 2 * 3600
    assert policy.business_seconds(opened, opened + 2 * 3600) == 3600


def test_the_default_policy_is_the_contracts(tmp_path):
    assert load_policy(None) is DEFAULT_POLICY
    assert not DEFAULT_POLICY.business_hours_set
    assert dict(DEFAULT_POLICY.targets["first_response"]) == {
        "urgent": 900,
        "high": 3600,
        "normal": 14400,
        "low": 28800,
    }
    assert dict(DEFAULT_POLICY.targets["resolution"]) == {
        "urgent": 14400,
        "high": 28800,
        "normal": 86400,
        "low": 259200,
    }
    assert DEFAULT_POLICY.due("resolution", "urgent", 1000.0) == 15400.0
    assert DEFAULT_POLICY.business_seconds(0.0, 7200.0) == 7200.0


def test_targets_only_means_calendar_time(tmp_path):
    policy = load_policy(write(tmp_path, TARGETS))
    assert not policy.business_hours_set
    assert policy.due("first_response", "urgent", 50.0) == 950.0


def test_check_summarises_the_policy(tmp_path):
    summary = check_policy_file(write(tmp_path, GOOD))
    assert "Europe/Berlin" in summary
    assert "mon: 09:00-12:00, 13:00-17:00" in summary
    assert "wed: closed" in summary
    assert "2026-12-25" in summary
    assert "urgent 900" in summary


BAD = [
    ("timezone: UTC\ncolour: blue\n" + TARGETS, 2, "unknown key 'colour'"),
    ("timezone: Mars/Olympus\nbusiness_hours:\n  mon: ['09:00-17:00']\n" + TARGETS, 1, "timezone"),
    ("timezone: UTC\nbusiness_hours:\n  mon: ['9-17']\n" + TARGETS, 3, "HH:MM"),
    ("timezone: UTC\nbusiness_hours:\n  tue: ['09:00-25:00']\n" + TARGETS, 3, "24:00"),
    ("timezone: UTC\nbusiness_hours:\n  mon: ['09:75-10:00']\n" + TARGETS, 3, "time of day"),
    ("timezone: UTC\nbusiness_hours:\n  mon: ['17:00-09:00']\n" + TARGETS, 3, "before it ends"),
    ("timezone: UTC\nbusiness_hours:\n  mon: ['10:00-10:00']\n" + TARGETS, 3, "before it ends"),
    (
        "timezone: UTC\nbusiness_hours:\n  mon:\n    - '09:00-12:00'\n    - '11:00-13:00'\n"
        + TARGETS,
        5,
        "overlaps 09:00-12:00",
    ),
    ("timezone: UTC\nbusiness_hours:\n  monday: ['09:00-17:00']\n" + TARGETS, 3, "'monday'"),
    ("timezone: UTC\nbusiness_hours:\n  mon: []\n  sun: []\n" + TARGETS, 2, "never be due"),
    ("timezone: UTC\nbusiness_hours: {}\n" + TARGETS, 2, "never be due"),
    ("business_hours:\n  mon: ['09:00-17:00']\n" + TARGETS, 1, "timezone"),
    (
        "timezone: UTC\nbusiness_hours:\n  mon: ['09:00-17:00']\nholidays: ['2026-02-30']\n"
        + TARGETS,
        4,
        "2026-02-30",
    ),
    (
        "timezone: UTC\nbusiness_hours:\n  mon: ['09:00-17:00']\nholidays:\n  - christmas\n"
        + TARGETS,
        5,
        "christmas",
    ),
    ("holidays: ['2026-12-25']\n" + TARGETS, 1, "need business_hours"),
    (
        "targets:\n  first_response: {urgent: 900, high: 3600, normal: 14400}\n"
        "  resolution: {urgent: 1, high: 2, normal: 3, low: 4}\n",
        2,
        "missing low",
    ),
    (
        "targets:\n  first_response: {urgent: 900, high: 3600, normal: 14400, low: 1}\n",
        2,
        "'resolution'",
    ),
    (TARGETS.replace("urgent: 14400", "urgent: 0"), 3, "positive"),
    (TARGETS.replace("high: 3600", "high: -5"), 2, "positive"),
    (TARGETS.replace("high: 3600", "high: soon"), 2, "number of seconds"),
    (TARGETS.replace("low: 28800", "low: .nan"), 2, "number of seconds"),
    (TARGETS.replace("low: 28800", "low: .inf"), 2, "number of seconds"),
    (TARGETS.replace("low: 28800", "lowest: 28800"), 2, "'lowest'"),
    ("timezone: UTC\ntimezone: UTC\n" + TARGETS, 2, "twice"),
    ("timezone: UTC\n", 1, "missing 'targets'"),
    ("timezone: UTC\ntargets: [1, 2]\n", 2, "mapping"),
    ("- just\n- a list\n", 1, "mapping"),
    ("timezone: UTC\ntargets: {first_response: [\n", 3, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "line", "problem"), BAD)
def test_a_bad_policy_is_refused_naming_file_and_line(tmp_path, text, line, problem):
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message
    with pytest.raises(PolicyError):
        check_policy_file(path)


def test_empty_and_missing_files_are_refused_naming_the_file(tmp_path):
    empty = write(tmp_path, "")
    with pytest.raises(PolicyError, match=f"^{empty}: .*empty"):
        load_policy(empty)
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError, match=f"^{missing}: cannot read"):
        load_policy(missing)


def test_every_priority_is_a_target():
    assert set(PRIORITIES) == {"low", "normal", "high", "urgent"}
