"""The cx-pipeline benchmark: one run, one broker, one data set, every stage.

1. **Prefill**: ``--events`` (1 000 000) realistic events from the shop simulator (the last
   ``--history`` of traffic, inside the 24 h window) are produced in whole batches to the four
   source topics (``--partitions`` 8 each) of a fresh topic prefix; the records per partition
   are reported (the hottest partition's share bounds scale-out).
2. **Ceilings**: a bare aiokafka consumer (no group) reads them all three times: without
   decoding, with ``orjson.loads``, and with ``schemas.decode_record`` (orjson + the contract)
   per record; CPU per event of each.
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
7. **Pinned**: a fresh worker under ``taskset -c --pin-cpu`` drains the prefill again.
8. **Faust**: an agent over the four topics doing the same ``decode_record`` per event, timed
   on the first ``--naive-events`` (30 000) records (its rate is per record and steady, so the
   full-N time is extrapolated): untuned (defaults), tuned (research/perf.md), and tuned with
   one table write per record (``bench/stages/faust_agent.py``).
9. **Quix Streams**: survey NPS/CSAT/CES per channel in 5m/1h/24h windows over the surveys
   topic (``bench/stages/quix_survey.py`` says what it computes and what it leaves out).
   ``--no-peers`` skips the tuned Faust agents and Quix.
10. **Hostile input**: the first ``--hostile-events`` (all) prefilled events with
   ``--garbage-share`` (10 %) garbage interleaved on every partition (:func:`bench.data.mix_garbage`:
   non-UTF-8, truncated JSON, wrong types, unknown types, NaN, oversized, deep nesting, bad
   keys), on a prefix of their own, drained by a fresh worker: records/s against the clean
   drain, and rejected == dead-lettered == garbage, reason by reason.
11. **Placement** (``--placement-events``, 100 000; ``bench/placement.py``): the same events
   placed by murmur2 and round-robin, each drained by a fresh worker: CPU per event of
   misplaced input against home input.
12. **Intake** (``--intake-events``, 30 000; ``bench/collector.py``): the HTTP collector
   against producing the same events straight to Kafka.
   Both run after the others on a broker of their own (the main one holds millions of records).

``--cost-point`` runs only stages 1, 3, 4 and 5: a point of the cost curve (CPU µs/event, RSS)
at sizes where the whole run would not fit in the embedded broker (``--events 3000000``), written
as ``bench/results/costcurve-<stamp>.json``.

Results: ``bench/results/<UTC stamp>.json`` (+ ``latest.json``), a PNG chart (+ ``latest.png``)
and markdown tables on stdout, the last one our worker against every baseline (ratio, CPU µs per
event). Code: ``bench/harness/`` is the plumbing every stage shares (broker, bare reads, CPU
meters, child processes), ``bench/stages/`` one module per stage. ``--short`` is the CI smoke
run (every stage but placement and intake, on tiny sizes, < 60 s). ``--profile`` samples the
worker with py-spy during the drain. Entry point: :func:`bench.run.main`.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see :func:`bench.run.main`); imported lazily so that the baseline
    children (``python -m bench.stages.faust_agent``) do not load the whole harness."""
    from bench.run import main as run_main

    return run_main(argv)
