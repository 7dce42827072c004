"""The worker's GC policy (pipeline/worker/gc_policy.py): what a collection scans stays bounded
by the young generation, however much long-lived state the process holds, and young garbage
cycles are still reclaimed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pipeline.worker import gc_policy


@pytest.fixture
def policy() -> Iterator[None]:
    threshold, callbacks = gc.get_threshold(), list(gc.callbacks)
    gc.collect()
    gc_policy.install()
    gc_policy.install()  # idempotent
    try:
        yield
    finally:
        gc.callbacks[:] = callbacks
        gc.set_threshold(*threshold)
        gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_long_lived_state_leaves_the_collectors_reach(policy: None) -> None:
    assert gc.callbacks.count(gc_policy._freeze_survivors) == 1
    state = [{"cart": [i]} for i in range(5 * gc_policy.YOUNG_OBJECTS)]  # 10 containers each
    # automatic collections ran while the state grew, and froze what survived them
    assert gc.get_freeze_count() >= 8 * gc_policy.YOUNG_OBJECTS
    scanned_by_next_collection = len(gc.get_objects())
    assert scanned_by_next_collection <= 2 * gc_policy.YOUNG_OBJECTS
    del state


def test_a_cycle_that_dies_young_is_still_collected(policy: None) -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    del first, second
    gc.collect(0)
    assert alive() is None
