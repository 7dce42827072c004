"""The SLA policy (``CX_SLA_POLICY``, YAML): targets per priority, counted in business time.

CONTRACT.md, "SLA and business hours (tickets)". A bad policy must stop the worker at start
with a message a support lead can act on, so the file is read as a YAML node tree (PyYAML
``compose``) rather than plain data: every error names the file and the LINE of the offending
key or value. Checked: unknown and duplicate keys, malformed times, ranges that end before they
start or overlap, unknown zones, missing priorities, non-positive targets, bad holiday dates,
and business hours with no hours in the week (such a policy would never be due).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pipeline.domain.business_time import (
    WEEKDAYS,
    BusinessCalendar,
    Range,
    format_clock,
    parse_clock,
)
from schemas import Priority

KINDS = ("first_response", "resolution")
PRIORITIES = tuple(priority.value for priority in Priority)
TOP_KEYS = ("timezone", "business_hours", "holidays", "targets")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class SlaPolicy:
    """Targets (seconds of business time) per kind and priority, on a business calendar."""

    calendar: BusinessCalendar
    targets: Mapping[str, Mapping[str, float]]
    source: str = "default policy"

    @property
    def business_hours_set(self) -> bool:
        return not self.calendar.is_calendar_time

    def due(self, kind: str, priority: str, opened_at: float) -> float:
        """When ``kind`` (first_response/resolution) of a ``priority`` ticket is due."""
        return self.calendar.add(opened_at, self.targets[kind][priority])

    def business_seconds(self, start: float, end: float) -> float:
        return self.calendar.between(start, end)


def _frozen_targets(
    targets: Mapping[str, Mapping[str, float]],
) -> Mapping[str, Mapping[str, float]]:
    return MappingProxyType({kind: MappingProxyType(dict(per)) for kind, per in targets.items()})


DEFAULT_POLICY = SlaPolicy(
    calendar=BusinessCalendar(),
    targets=_frozen_targets(
        {
            "first_response": {"urgent": 900, "high": 3600, "normal": 14400, "low": 28800},
            "resolution": {"urgent": 14400, "high": 28800, "normal": 86400, "low": 259200},
        }
    ),
)
"""CONTRACT.md's default: calendar time (UTC, 24x7) and the targets shown there."""


# -- reading the node tree ---------------------------------------------------------------------
class _Reader:
    """Turns YAML nodes into values, raising PolicyError that point at ``file:line``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node | None, problem: str) -> PolicyError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return PolicyError(f"{self.source}{line}: {problem}")

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """``{key: (key node, value node)}``; unknown or repeated keys are refused."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in allowed:
                raise self.fail(
                    key_node, f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})"
                )
            if key in found:
                raise self.fail(key_node, f"{key!r} appears twice in {what}")
            found[key] = (key_node, value_node)
        return found

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be a single value")
        return str(node.value)

    def zone(self, node: yaml.Node) -> ZoneInfo:
        name = self.scalar(node, "timezone")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(
                node, f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)"
            ) from None

    def day_ranges(self, node: yaml.Node, day: str) -> tuple[Range, ...]:
        ranges: list[tuple[Range, yaml.Node]] = []
        for item in self.sequence(node, f"business_hours.{day}"):
            ranges.append((self.time_range(item, day), item))
        ranges.sort(key=lambda pair: pair[0])
        for (earlier, _), (later, later_node) in itertools.pairwise(ranges):
            if later[0] < earlier[1]:
                raise self.fail(
                    later_node,
                    f"business_hours.{day}: {_show(later)} overlaps {_show(earlier)}",
                )
        return tuple(found for found, _ in ranges)

    def time_range(self, node: yaml.Node, day: str) -> Range:
        text = self.scalar(node, f"a business_hours.{day} range").strip()
        start_text, dash, end_text = text.partition("-")
        try:
            if not dash:
                raise ValueError(f"{text!r} is not HH:MM-HH:MM")
            start, end = parse_clock(start_text.strip()), parse_clock(end_text.strip())
        except ValueError as error:
            raise self.fail(node, f"business_hours.{day}: {error}") from None
        if start >= end:
            raise self.fail(
                node,
                f"business_hours.{day}: {text!r} must start before it ends; a range over "
                "midnight is two ranges (e.g. 22:00-24:00 and 00:00-06:00 of the next day)",
            )
        return (start, end)

    def holiday(self, node: yaml.Node) -> date:
        text = self.scalar(node, "a holiday")
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            raise self.fail(node, f"holiday {text!r} is not a date YYYY-MM-DD") from None

    def seconds(self, node: yaml.Node, what: str) -> float:
        text = self.scalar(node, what)
        try:
            value = float(text)
        except ValueError:
            raise self.fail(node, f"{what} must be a number of seconds, not {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise self.fail(node, f"{what} must be a positive number of seconds, not {text}")
        return value


def _show(found: Range) -> str:
    return f"{format_clock(found[0])}-{format_clock(found[1])}"


def _parse(text: str, source: str) -> SlaPolicy:
    reader = _Reader(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise PolicyError(f"{source}{where}: not valid YAML: {problem}") from None
    if root is None:
        raise PolicyError(f"{source}: the policy file is empty (it needs at least targets)")
    top = reader.mapping(root, "the policy", TOP_KEYS)
    if "targets" not in top:
        raise reader.fail(root, "missing 'targets' (first_response and resolution per priority)")
    weekly = _weekly(reader, top)
    holidays = _holidays(reader, top, weekly is not None)
    if "timezone" in top:
        zone = reader.zone(top["timezone"][1])
    elif weekly is not None:
        raise reader.fail(
            top["business_hours"][0], "business_hours are local times: name the timezone too"
        )
    else:
        zone = ZoneInfo("UTC")
    return SlaPolicy(
        calendar=BusinessCalendar(zone=zone, weekly=weekly, holidays=holidays),
        targets=_frozen_targets(_targets(reader, top["targets"][1])),
        source=source,
    )


def _weekly(
    reader: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]
) -> tuple[tuple[Range, ...], ...] | None:
    if "business_hours" not in top:
        return None
    key_node, node = top["business_hours"]
    days = reader.mapping(node, "business_hours", WEEKDAYS)
    weekly = tuple(reader.day_ranges(days[day][1], day) if day in days else () for day in WEEKDAYS)
    if not any(weekly):
        raise reader.fail(
            key_node,
            "business_hours has no hours in the whole week: tickets would never be due "
            "(remove business_hours for calendar time, 24x7)",
        )
    return weekly


def _holidays(
    reader: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]], hours_set: bool
) -> frozenset[date]:
    if "holidays" not in top:
        return frozenset()
    key_node, node = top["holidays"]
    if not hours_set:
        raise reader.fail(
            key_node,
            "holidays need business_hours (without them the clock is calendar time, 24x7)",
        )
    return frozenset(reader.holiday(item) for item in reader.sequence(node, "holidays"))


def _targets(reader: _Reader, node: yaml.Node) -> dict[str, dict[str, float]]:
    kinds = reader.mapping(node, "targets", KINDS)
    targets: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        if kind not in kinds:
            raise reader.fail(node, f"targets: missing {kind!r}")
        per_node = kinds[kind][1]
        given = reader.mapping(per_node, f"targets.{kind}", PRIORITIES)
        missing = [priority for priority in PRIORITIES if priority not in given]
        if missing:
            raise reader.fail(per_node, f"targets.{kind}: missing {', '.join(missing)}")
        targets[kind] = {
            priority: reader.seconds(given[priority][1], f"targets.{kind}.{priority}")
            for priority in PRIORITIES
        }
    return targets


# -- public entry points -----------------------------------------------------------------------
def load_policy(path: str | Path | None) -> SlaPolicy:
    """The policy in ``path``, or the default when ``path`` is None (``CX_SLA_POLICY`` unset)."""
    if path is None:
        return DEFAULT_POLICY
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"{path}: cannot read the SLA policy: {error}") from None
    return _parse(text, str(path))


def describe(policy: SlaPolicy) -> str:
    """A human summary: what the clock counts and when each priority is due."""
    calendar = policy.calendar
    lines = [f"SLA policy: {policy.source}"]
    if calendar.weekly is None:
        lines.append("clock: calendar time (24x7, UTC)")
    else:
        weekly_hours = sum(end - start for ranges in calendar.weekly for start, end in ranges)
        lines.append(
            f"clock: business hours in {calendar.zone.key}, {weekly_hours / 3600:g} h a week"
        )
        for day, ranges in zip(WEEKDAYS, calendar.weekly, strict=True):
            lines.append(f"  {day}: {', '.join(_show(found) for found in ranges) or 'closed'}")
        if calendar.holidays:
            shown = ", ".join(str(day) for day in sorted(calendar.holidays))
            lines.append(f"holidays: {shown}")
    lines.append("targets (seconds):")
    for kind in KINDS:
        per = policy.targets[kind]
        lines.append(f"  {kind}: " + ", ".join(f"{p} {per[p]:g}" for p in PRIORITIES))
    return "\n".join(lines)


def check_policy_file(path: str | Path) -> str:
    """Validate ``path`` without starting anything (``cxpipe sla check FILE``).

    Returns the summary; raises PolicyError with the file:line message.
    """
    return describe(load_policy(path))
