"""Full-state checkpoints and view snapshots: start-up and recovery read a bounded suffix of the
checkpoint log and end in exactly the state a fold of the whole log gives."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.aggregates.windows import window_specs
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.settings import Settings
from pipeline.tools.simulate import ShopSimulator
from pipeline.worker.handlers import make_handler

START = 1_800_000_000.0
HOUR = 3600.0
SETTINGS = Settings(
    bootstrap_servers="unused:9092",
    windows="5m,1h",
    snapshot_interval=600,
    checkpoint_retention=6 * HOUR,
    quiet_period=0,
)


def new_processor(topic: str) -> PartitionProcessor:
    return PartitionProcessor(
        topic=topic,
        topic_name=f"cx.{topic}",
        partition=0,
        handler=make_handler(topic, SETTINGS),
        settings=SETTINGS,
    )


def new_view() -> View:
    return View(window_specs(SETTINGS.window_seconds), SETTINGS.recovery_horizon)


def run_log(topic: str, hours: float, flush: float = 30.0) -> tuple[PartitionProcessor, list]:
    """A processor fed ``hours`` of simulated traffic of one topic, checkpointing every
    ``flush`` seconds of its clock; returns it and its checkpoint log (wire bytes)."""
    simulator = ShopSimulator(rate=0.5, seed=7, start=START)
    proc = new_processor(topic)
    log: list[bytes] = []
    offset = 0
    now = START
    while now < START + hours * HOUR:
        now += flush
        for event in simulator.events_until(now):
            if event.topic == topic:
                proc.process(offset, event.key.encode(), orjson.dumps(event.value), (), now)
                offset += 1
        proc.tick(now)
        checkpoint = proc.take_checkpoint(now)
        if checkpoint is not None:
            log.append(checkpoint.encode())
    return proc, log


def state_of(proc: PartitionProcessor) -> tuple:
    return (
        proc.handler.take_changes(full=True),
        sorted(proc.ids),
        proc.out.pending_to_wire(),
        proc.seq,
        proc.next_offset,
        proc.last_full_at,
    )


@pytest.mark.parametrize("topic", ["tickets", "carts", "orders"])
def test_recovery_from_the_indexed_suffix_equals_recovery_from_the_whole_log(topic):
    live, log = run_log(topic, hours=4)
    now = START + 4 * HOUR
    assert sum(Checkpoint.decode(data).full for data in log) >= 20

    view = new_view()
    for offset, data in enumerate(log):
        view.apply(Checkpoint.decode(data, for_view=True), (0, offset))
    view.expire(now)
    start = view.recovery_start((f"cx.{topic}", 0), 0, now)
    assert len(log) / 2 < start < len(log), "recovery should read a bounded suffix, not the log"

    whole, suffix = new_processor(topic), new_processor(topic)
    whole.restore([Checkpoint.decode(data) for data in log], now)
    suffix.restore([Checkpoint.decode(data) for data in log[start:]], now)
    live.ids.expire(now)
    assert state_of(suffix) == state_of(whole) == state_of(live)


def test_a_suffix_that_starts_after_the_last_full_checkpoint_would_lose_entities():
    """The index must point at or before the last full checkpoint: prove the test above can fail."""
    _, log = run_log("tickets", hours=2)
    checkpoints = [Checkpoint.decode(data) for data in log]
    last_full = max(i for i, c in enumerate(checkpoints) if c.full)
    whole, cut = new_processor("tickets"), new_processor("tickets")
    whole.restore(checkpoints, START + 2 * HOUR)
    cut.restore(checkpoints[last_full + 1 :], START + 2 * HOUR)
    assert cut.handler.take_changes(full=True) != whole.handler.take_changes(full=True)


def test_an_idle_partition_still_writes_a_full_checkpoint_every_interval():
    proc = new_processor("tickets")
    first = proc.take_checkpoint(START)
    assert first is not None and first.full
    assert proc.take_checkpoint(START + 1) is None
    later = proc.take_checkpoint(START + SETTINGS.snapshot_interval)
    assert later is not None and later.full and later.seq == 2


def nonzero(totals: dict) -> dict:
    return {series: amount for series, amount in totals.items() if amount}


def test_a_view_started_from_a_snapshot_equals_one_that_read_the_whole_log():
    _, tickets = run_log("tickets", hours=3)
    _, carts = run_log("carts", hours=3)
    logs = {0: list(enumerate(tickets)), 1: list(enumerate(carts))}
    turns = [0] * len(tickets) + [1] * len(carts)
    random.Random(3).shuffle(turns)  # partitions interleave in any order, each one in order
    entries = [(p, *logs[p].pop(0)) for p in turns]
    cut = len(entries) // 2
    now = START + 3 * HOUR

    whole, early = new_view(), new_view()
    for n, (partition, offset, data) in enumerate(entries):
        checkpoint = Checkpoint.decode(data, for_view=True)
        whole.apply(checkpoint, (partition, offset))
        if n < cut:
            early.apply(checkpoint, (partition, offset))
    started = new_view()
    started.load_snapshot(early.to_snapshot())
    for partition, offset, data in entries:
        if offset >= started.positions.get(partition, 0):
            started.apply(Checkpoint.decode(data, for_view=True), (partition, offset))

    assert started.applied == whole.applied and started.positions == whole.positions
    assert started.ledger.applied == whole.ledger.applied
    # a snapshot leaves out totals that came back to 0 (an at-risk count, a backlog)
    assert nonzero(started.totals) == nonzero(whole.totals)
    assert sorted(started.store.series()) == sorted(whole.store.series())
    for series in whole.store.series():
        for spec in whole.specs:
            assert wire(started.store.total(series, spec, now)) == wire(
                whole.store.total(series, spec, now)
            )
    for source in whole.index:
        assert started.recovery_start(source, 0, now) == whole.recovery_start(source, 0, now)


def wire(value):
    return value.to_wire() if hasattr(value, "to_wire") else value


def test_a_snapshot_for_other_windows_or_garbage_is_refused_and_changes_nothing():
    _, log = run_log("surveys", hours=1)
    source = new_view()
    for offset, data in enumerate(log):
        source.apply(Checkpoint.decode(data, for_view=True), (0, offset))
    snapshot = source.to_snapshot()

    other = View(window_specs((300.0, 86_400.0)))
    with pytest.raises(ValueError, match="other windows"):
        other.load_snapshot(snapshot)
    assert other.applied == 0 and not list(other.store.series())
    with pytest.raises(ValueError, match="empty view"):
        source.load_snapshot(snapshot)


@given(st.binary(max_size=200))
def test_garbage_snapshots_raise_value_error(data):
    view = new_view()
    with pytest.raises(ValueError):
        view.load_snapshot(data)
    assert view.applied == 0


def test_retention_shorter_than_recovery_needs_is_refused():
    with pytest.raises(ValueError, match="checkpoint_retention"):
        Settings(bootstrap_servers="x:1", checkpoint_retention=HOUR)


def test_full_checkpoints_of_partitions_spread_over_the_interval():
    """All partitions writing their full state in one flush would set the worker's peak memory."""
    processors = [
        PartitionProcessor(
            topic="carts",
            topic_name="cx.carts",
            partition=p,
            handler=make_handler("carts", SETTINGS),
            settings=SETTINGS,
        )
        for p in range(8)
    ]
    second_full: list[float] = []
    for proc in processors:
        assert proc.take_checkpoint(START).full
        t = START
        while True:
            t += 10
            checkpoint = proc.take_checkpoint(t)
            if checkpoint is not None and checkpoint.full:
                second_full.append(t - START)
                break
    interval = SETTINGS.snapshot_interval
    assert all(interval / 2 <= gap <= interval for gap in second_full)
    assert len(set(second_full)) >= 6, second_full
