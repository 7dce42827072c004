"""The worker's garbage-collector policy: every collection stays short, however large the state.

A worker holds hundreds of thousands to millions of long-lived container objects (carts,
tickets, window buckets, event ids). None is in a reference cycle, so reference counting frees
them, yet CPython's cyclic collector keeps re-scanning them. With the default thresholds
(700, 10, 10) it re-scanned them so often that parsing a full checkpoint of 88k carts took 2.5 s
instead of 0.12 s. Raising the thresholds only made the scans rarer and longer: with
(100_000, 50, 1000), after a 1M-event drain, the first middle-generation collection took 2.0 s
and the next full one 3.2 s (2.7M objects). Each stalled every event, scrape and group
heartbeat, and the pause grows with the state.

So every object that survives a young collection is frozen (``gc.freeze``): no later collection
scans it again. A collection then scans only the objects tracked since the previous one: about
:data:`YOUNG_OBJECTS` (0.05-0.12 s each after 1M events). Objects the count misses can make it
more: after a 1M-event backfill's cart decisions, 945k (0.74 s; README, "stalls") while a
finished cart's lists were replaced rather than emptied in place. Frozen
objects are still freed by reference counting as usual.

The cost is that a reference cycle is never collected once it has lived through one young
collection. The worker's own state has no cycles; library objects that do (exceptions with
their tracebacks, finished tasks) almost always die young.
"""

from __future__ import annotations

import gc
from typing import Any

YOUNG_OBJECTS = 100_000
"""Net new container objects between collections: the young generation a collection scans.
Fewer, larger collections cost less CPU per object; this size keeps each near 0.1 s."""


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()


def install() -> None:
    """Apply the policy to this process (idempotent)."""
    gc.set_threshold(YOUNG_OBJECTS, 50, 1000)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)
