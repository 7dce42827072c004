"""Soak run: does a worker's memory stay flat once its windows are full? (issue #5)

A day of traffic must not cost a day of real time, so time is compressed: one
:class:`AcceleratedClock` (simulated epoch seconds running ``--speed`` times faster than real
time) drives both the shop simulator feeding the broker and a real worker in a child process
(``bench/soak_worker.py``). Every time-based rule of the pipeline (windows, late checks, dedupe
expiry, cart timers, entity retention, full checkpoints) reads that clock; only asyncio waits
and Kafka timeouts stay in real time. The simulator is warmed up (``--warm-up``, unproduced) so
the traffic mix is stationary from the first hour; ``--retention`` shortens how long orders and
tickets are kept (30 days in the pipeline) to see memory once they level off too.

The parent samples, once per ``--sample-every`` real seconds: the worker's RSS (psutil), its
/metrics (``cx_pipeline_*``, ``python_gc_*``, the number of exposed samples) and the sizes the
child reports of its own structures (view buckets, dedupe ids, carts, orders, tickets, timers;
:func:`structure_sizes`). Results: ``bench/results/soak-<stamp>.json``, ``soak-<stamp>.png``, a
table per simulated hour on stdout, and the verdict: RSS growth from simulated hour
``--steady-from`` (25: the 24 h window plus lateness is full) to the end.

Run: ``python -m bench.soak`` or ``cxpipe soak`` (``--help`` for the knobs).

Modules: ``clock`` (the accelerated clock, feed and probes; shared with the soak test),
``run`` (the run itself), ``verdict`` (hour rows, verdict, table, chart).
"""

from bench.soak.clock import (
    AcceleratedClock,
    feed,
    midnight_before,
    structure_sizes,
    until,
    warmed_up,
)
from bench.soak.run import main

__all__ = [
    "AcceleratedClock",
    "feed",
    "main",
    "midnight_before",
    "structure_sizes",
    "until",
    "warmed_up",
]
