"""Spikes for demos of the alerts, and their CLI form ``[+OFFSET,]DURATION[:FACTORx]``.

A :class:`TtrSpike` is an outage in support (slow resolutions, the TTR alerts); an
:class:`SlaSpike` is a wave of urgent tickets that the team cannot answer in time (the SLA
alerts, "urgent tickets at risk" first).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

from pipeline.settings import parse_duration


@dataclass(frozen=True, slots=True)
class _Spike:
    """``[start, start + duration]`` (epoch seconds) and how much stronger than normal."""

    name: ClassVar[str]
    start: float
    duration: float
    factor: float

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"{self.name} duration must be positive, got {self.duration!r}")
        if not self.factor > 1:
            raise ValueError(f"{self.name} factor must be greater than 1, got {self.factor!r}")

    @property
    def end(self) -> float:
        return self.start + self.duration

    def active(self, t_ms: int) -> bool:
        """Whether epoch ms ``t_ms`` lies inside the spike."""
        return self.start * 1000 <= t_ms <= self.end * 1000


@dataclass(frozen=True, slots=True)
class TtrSpike(_Spike):
    """Tickets resolved in ``[start, start + duration]`` took ``factor`` x their normal TTR.

    How (:meth:`~pipeline.tools.simulate.tickets.TicketStories.plan_spike`): the tickets that
    resolve during the spike are planned when the simulator is built. Their resolution times
    follow the normal ticket rate, each gets a normal TTR draw d and is opened ``factor * d``
    before its resolution, so the TTR of *every* first resolution inside the spike is factor x a
    normal draw: the p90 (any quantile) of any window inside the spike is ~factor x the normal
    one, while the resolution rate stays normal. Normal tickets that would have resolved inside
    the spike are held and resolved in a backlog drain right after it (within min(duration,
    30 min)), so the spike is followed by a burst of slightly-late resolutions, as after a real
    outage; slow TTRs also lower the support surveys' scores. Before the spike nothing changes
    except that the slow tickets are already open (the backlog grows). A slow ticket would have
    to open up to ``factor * TTR`` before the spike; those before the simulator's ``start`` are
    dropped, so the full effect needs that much simulated history (``run_live(history=...)`` or
    a smaller ``ttr_median``); without history the spike resolves only young tickets and barely
    shows.
    """

    name: ClassVar[str] = "TTR spike"
    factor: float = 8.0


@dataclass(frozen=True, slots=True)
class SlaSpike(_Spike):
    """Urgent tickets opened in ``[start, start + duration]`` arrive at ``factor`` x their normal
    rate and miss both targets of the default SLA policy.

    Urgent tickets are ~7 % of tickets, too few for the "urgent tickets at risk" alert (>= 5 of a
    kind due within the hour) at demo rates, hence the extra arrivals
    (:meth:`~pipeline.tools.simulate.tickets.TicketStories.plan_sla_spike`). Every urgent ticket
    opened inside the spike gets its first reply (if any) :data:`SLOW_REPLY` x and its
    resolution :data:`SLOW_RESOLUTION` x the default policy's urgent target after its opening,
    so it is "at risk" from its opening (first response: 15 min) and then breaches; in calendar
    time, and in business hours as long as those cover the spike and the hours after it. Other
    tickets are untouched. The at-risk count follows the urgent rate: ~factor x 7 % x tickets
    per 15 min (first response).
    """

    name: ClassVar[str] = "SLA spike"
    factor: float = 10.0

    SLOW_REPLY: ClassVar[tuple[float, float]] = (1.2, 3.0)
    """Range of a slow first reply, in multiples of the urgent first-response target."""
    SLOW_RESOLUTION: ClassVar[tuple[float, float]] = (1.2, 2.0)
    """Range of a slow resolution, in multiples of the urgent resolution target."""


_SPIKE_FORM = re.compile(
    r"^\s*(?:\+(?P<offset>[^,]+),)?(?P<duration>[^:,]+)(?::\s*(?P<factor>[0-9]*\.?[0-9]+)\s*[xX]?)?\s*$"
)
SpikeT = TypeVar("SpikeT", TtrSpike, SlaSpike)


def parse_spike(kind: type[SpikeT], text: str, now: float) -> SpikeT:
    """Parse the CLI form ``[+OFFSET,]DURATION[:FACTOR[x]]`` into a ``kind`` starting at ``now``.

    OFFSET and DURATION are durations (``90s``, ``10m``, ``1.5h``, bare numbers are seconds);
    FACTOR defaults to the kind's. ``"10m"`` = now for 10 min; ``"10m:5x"`` = 5x;
    ``"+2m,10m:5x"`` = starts in 2 min. Anything else raises ``ValueError`` naming the kind.
    """
    problem = f"not a valid {kind.name}: {text!r}"
    match = _SPIKE_FORM.match(text)
    if match is None:
        raise ValueError(
            f"{problem} (use [+OFFSET,]DURATION[:FACTORx], e.g. 10m, 10m:5x, +2m,10m:5x)"
        )
    try:
        offset = parse_duration(match["offset"].strip()) if match["offset"] else 0.0
        duration = parse_duration(match["duration"].strip())
    except ValueError as exc:
        raise ValueError(f"{problem}: {exc}") from None
    default = next(field.default for field in fields(kind) if field.name == "factor")
    factor = float(match["factor"]) if match["factor"] else float(default)  # type: ignore[arg-type]
    if offset < 0 or not math.isfinite(offset):
        raise ValueError(f"{problem}: offset must be >= 0")
    if duration <= 0 or not math.isfinite(duration):
        raise ValueError(f"{problem}: duration must be > 0")
    if factor <= 1 or not math.isfinite(factor):
        raise ValueError(f"{problem}: factor must be > 1")
    return kind(start=now + offset, duration=duration, factor=factor)


def parse_ttr_spike(text: str, now: float) -> TtrSpike:
    """``--ttr-spike``: :func:`parse_spike` of a :class:`TtrSpike` (FACTOR defaults to 8)."""
    return parse_spike(TtrSpike, text, now)


def parse_sla_spike(text: str, now: float) -> SlaSpike:
    """``--sla-spike``: :func:`parse_spike` of an :class:`SlaSpike` (FACTOR defaults to 10)."""
    return parse_spike(SlaSpike, text, now)
