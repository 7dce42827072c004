"""The cx-pipeline benchmark: one run, one broker, one data set, every stage.

1. **Prefill**: ``--events`` (1 000 000) realistic events from the shop simulator (the last
   ``--history`` of traffic, inside the 24 h window) are produced in whole batches to the four
   source topics (``--partitions`` 8 each) of a fresh topic prefix; the records per partition
   are reported (the hottest partition's share bounds scale-out).
2. **Raw ceiling**: a bare aiokafka consumer (no group) reads them all, once without decoding and
   once with ``schemas.decode_record`` (orjson + the contract) per record.
3. **Pipeline**: a real worker subprocess (``python -m pipeline.tools.cli worker``, fresh app id)
   drains the same topics from the beginning; ``sum(cx_events_total)`` on its /metrics, polled
   every 0.2 s, says when every event is counted. events/s from the first counted event
   (startup and group join excluded; the rate from process start is reported too).
4. **Latency**: the same worker gets a producer paced at ``--latency-load`` (50 %) of that rate
   for ``--latency-seconds`` (20), events stamped ``occurred_at`` = send time; each event's time
   from send to counted in /metrics (polled every 100 ms: a scrape of a full view costs the
   worker ~20 ms of CPU, so 50 ms polls would eat ~40 % of it) gives p50/p99.
5. **Memory**: the worker's RSS during the drain (at 25/50/75/100 % of the events) and after.
6. **Scale-out**: ``--scale-workers`` (2) fresh workers in ONE consumer group drain the same
   topics (prefill + latency events); the group is done when its slowest whole-shop view has
   counted everything. Every worker folds every checkpoint into its own view (replicated
   stage 2), so that part does not divide: its cost is measured by folding the group's
   checkpoint log once, and a model (ingest / n + view) is set against the measured ratio.
7. **Naive baseline**: a plain Faust agent over the four topics doing the same
   ``decode_record`` per event, timed on the first ``--naive-events`` (30 000) records (its
   rate is per record and steady, so the full-N time is extrapolated).
8. **Hostile input**: the first ``--hostile-events`` (all) prefilled events with
   ``--garbage-share`` (10 %) garbage interleaved on every partition (:func:`bench.data.mix_garbage`:
   non-UTF-8, truncated JSON, wrong types, unknown types, NaN, oversized, deep nesting, bad
   keys), on a prefix of their own, drained by a fresh worker: records/s against the clean
   drain, and rejected == dead-lettered == garbage, reason by reason.

Results: ``bench/results/<UTC stamp>.json`` (+ ``latest.json``), a PNG chart (+ ``latest.png``)
and a markdown table on stdout. ``--short`` is the CI smoke run (every stage on tiny sizes,
< 60 s). ``--profile`` samples the worker with py-spy during the drain. Entry point:
:func:`bench.run.main`.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see :func:`bench.run.main`); imported lazily so that
    ``python -m bench.naive`` does not load the whole harness."""
    from bench.run import main as run_main

    return run_main(argv)
