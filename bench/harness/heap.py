"""The harness's own heap kept out of what it measures."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_heap"]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive now out of the cyclic GC's reach for the duration.

    The harness holds millions of prefill objects. A full collection walks all of them: 0.5 to
    0.8 s at 300k events, measured in the latency stage. Inside a timed section that pause is
    billed to what is timed, or, while a paced producer runs, it stalls the sends and shows up as
    pipeline latency.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
