"""A TTR spike (an outage in support) and its CLI form, for demos of the TTR alerts."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pipeline.settings import parse_duration


@dataclass(frozen=True, slots=True)
class TtrSpike:
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

    start: float
    duration: float
    factor: float = 8.0

    def __post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"TTR spike duration must be positive, got {self.duration!r}")
        if not self.factor > 1:
            raise ValueError(f"TTR spike factor must be greater than 1, got {self.factor!r}")

    @property
    def end(self) -> float:
        return self.start + self.duration


_SPIKE = re.compile(
    r"^\s*(?:\+(?P<offset>[^,]+),)?(?P<duration>[^:,]+)(?::\s*(?P<factor>[0-9]*\.?[0-9]+)\s*[xX]?)?\s*$"
)


def parse_ttr_spike(text: str, now: float) -> TtrSpike:
    """Parse the CLI form ``[+OFFSET,]DURATION[:FACTOR[x]]`` into a spike starting at ``now``.

    OFFSET and DURATION are durations (``90s``, ``10m``, ``1.5h``, bare numbers are seconds);
    FACTOR defaults to 8. ``"10m"`` = now for 10 min, 8x; ``"10m:5x"`` = 5x;
    ``"+2m,10m:5x"`` = starts in 2 min. Anything else raises ``ValueError``.
    """
    match = _SPIKE.match(text)
    if match is None:
        raise ValueError(
            f"not a TTR spike: {text!r} (use [+OFFSET,]DURATION[:FACTORx], e.g. 10m, 10m:5x, +2m,10m:5x)"
        )
    try:
        offset = parse_duration(match["offset"].strip()) if match["offset"] else 0.0
        duration = parse_duration(match["duration"].strip())
    except ValueError as exc:
        raise ValueError(f"not a TTR spike: {text!r}: {exc}") from None
    factor = float(match["factor"]) if match["factor"] else 8.0
    if offset < 0 or not math.isfinite(offset):
        raise ValueError(f"not a TTR spike: {text!r}: offset must be >= 0")
    if duration <= 0 or not math.isfinite(duration):
        raise ValueError(f"not a TTR spike: {text!r}: duration must be > 0")
    if factor <= 1 or not math.isfinite(factor):
        raise ValueError(f"not a TTR spike: {text!r}: factor must be > 1")
    return TtrSpike(start=now + offset, duration=duration, factor=factor)
