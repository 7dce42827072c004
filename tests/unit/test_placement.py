"""Placement (issue #11): the numbers are the same whichever partitions records land on.

Pure tests of the routing decision and the origin-offset ledger, and a whole-pipeline simulation
without a broker: the same traffic placed by murmur2 and placed at random (plus duplicates on
other partitions, arbitrary interleavings and crashes between forward and checkpoint) must give
the same /metrics.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregates.windows import window_specs
from pipeline.domain.catalog import METRIC_SOURCES
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import MAX_KEY_BYTES, PartitionProcessor
from pipeline.engine.placement import (
    Origin,
    OriginLedger,
    Placement,
    canonical_partition,
    murmur2,
    origin_header,
    route,
    split_origin,
)
from pipeline.engine.view import View
from pipeline.http.view_metrics import pipeline_counters
from pipeline.worker.delivery import dead_letter_headers
from pipeline.worker.handlers import make_handler
from tests.integration.stories import cart_story, order_story, survey, ticket_story
from tests.unit.domain_support import NOW, SETTINGS, Samples, samples_of

PARTITIONS = 3
TOPICS = ("carts", "orders", "tickets", "surveys")
KEY_FIELD = {"carts": "cart_id", "orders": "order_id", "tickets": "ticket_id"}
KEY_FIELD["surveys"] = "response_id"


# -- the routing decision ---------------------------------------------------------------------
@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_murmur2_is_kafkas(data):
    """Same hash as aiokafka's byte-by-byte port of the Java client's."""
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.binary(min_size=1, max_size=40), st.integers(1, 64), st.integers(0, 63))
def test_route_keeps_canonical_records_and_sends_others_home(key, partitions, landed):
    landed %= partitions
    home = (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions
    assert route(key, landed, Placement(partitions)) == (None if landed == home else home)


def test_keyless_records_stay_where_they_landed():
    assert route(None, 2, Placement(4)) is None


def test_placement_cache_stays_bounded_and_right():
    placement = Placement(7, cache_size=5)
    keys = [f"cart-{i}".encode() for i in range(50)] * 2
    assert [placement.of(k) for k in keys] == [canonical_partition(k, 7) for k in keys]
    assert len(placement._cache) <= 5


@given(
    st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=4),
    st.integers(0, 99),
    st.integers(0, 2**40),
)
def test_origin_header_round_trips_and_keeps_the_producers_headers(own, partition, offset):
    own = [(name, value) for name, value in own if name != "cx.origin"]
    found, rest = split_origin("cx.carts", [*own, origin_header(partition, offset)])
    assert found == Origin("cx.carts", partition, offset) and list(rest) == own
    assert split_origin("cx.carts", own) == (None, own)
    moved = [origin_header(partition, offset), *own]  # not last: found the slow way
    assert split_origin("cx.carts", moved)[0] == found
    assert split_origin("cx.carts", [("cx.origin", b"nonsense")]) == (None, [])


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30)), max_size=60))
def test_origin_ledger_admits_exactly_what_is_new_per_origin_partition(forwards):
    """Against a brute force: a forward is new iff above every offset admitted from its partition
    (an origin forwards in offset order; a re-send after a crash repeats offsets already sent)."""
    ledger = OriginLedger()
    admitted: list[tuple[int, int]] = []
    for partition, offset in forwards:
        new = all(o < offset for p, o in admitted if p == partition)
        assert ledger.admit(Origin("t", partition, offset)) == new
        if new:
            admitted.append((partition, offset))
    copy = OriginLedger()
    copy.restore(orjson.loads(orjson.dumps(ledger.to_wire())))
    assert copy.applied == ledger.applied


# -- a processor: forwards, repeats, duplicates ---------------------------------------------
def processor(topic: str, partition: int) -> PartitionProcessor:
    return PartitionProcessor(
        topic=topic,
        topic_name=f"cx.{topic}",
        partition=partition,
        handler=make_handler(topic, SETTINGS),
        settings=SETTINGS,
        placement=Placement(PARTITIONS),
    )


def survey_record(event: dict) -> tuple[bytes, bytes]:
    return event["response_id"].encode(), orjson.dumps(event)


def off_home(key: bytes) -> int:
    return (canonical_partition(key, PARTITIONS) + 1) % PARTITIONS


def test_misplaced_record_is_forwarded_raw_counted_and_applied_at_home():
    key, value = survey_record(survey(NOW - 60, 10))
    home, landed = canonical_partition(key, PARTITIONS), off_home(key)
    origin = processor("surveys", landed)
    origin.process(7, key, value, [("trace", b"1")], NOW)
    forwards = origin.take_forwards()
    assert [(f.partition, f.key, f.value) for f in forwards] == [(home, key, value)]
    checkpoint = origin.take_checkpoint(NOW)
    assert checkpoint is not None and dict(checkpoint.delta.totals) == {
        ("misplaced", ("cx.surveys",)): 1
    }
    owner = processor("surveys", home)
    owner.process_forwarded(0, key, value, forwards[0].headers, NOW)
    totals = dict(owner.take_checkpoint(NOW).delta.totals)
    assert totals == {("events", ("cx.surveys", "survey.submitted")): 1}


def test_forward_resent_after_a_crash_counts_once_and_is_no_duplicate():
    records = [survey_record(survey(NOW - 60, 9)) for _ in range(12)]
    misplaced = [(k, v) for k, v in records if canonical_partition(k, PARTITIONS) != 0]
    origin = processor("surveys", 0)
    for offset, (key, value) in enumerate(misplaced):
        origin.process(offset, key, value, (), NOW)
    sent = origin.take_forwards()  # delivered... then the origin dies before its checkpoint
    restarted = processor("surveys", 0)
    for offset, (key, value) in enumerate(misplaced):
        restarted.process(offset, key, value, (), NOW)
    resent = restarted.take_forwards()
    assert [f.headers for f in resent] == [f.headers for f in sent]
    owners = {p: processor("surveys", p) for p in range(PARTITIONS)}
    logs: dict[int, list] = defaultdict(list)
    for forward in [*sent, *resent]:
        logs[forward.partition].append(forward)
    totals: dict = defaultdict(int)
    for partition, log in logs.items():
        owner = owners[partition]
        half = len(log) // 2
        for offset, forward in enumerate(log[:half]):
            owner.process_forwarded(offset, forward.key, forward.value, forward.headers, NOW)
        first = owner.take_checkpoint(NOW)
        # the owner restarts too: its checkpoint remembers the origin offsets it applied
        owner = processor("surveys", partition)
        owner.restore([Checkpoint.decode(first.encode())] if first else [], NOW)
        for offset, forward in enumerate(log):
            owner.process_forwarded(offset, forward.key, forward.value, forward.headers, NOW)
        for checkpoint in (first, owner.take_checkpoint(NOW)):
            for series, amount in (checkpoint.delta.totals if checkpoint else {}).items():
                totals[series] += amount
    assert dict(totals) == {("events", ("cx.surveys", "survey.submitted")): len(misplaced)}


def test_a_repeated_event_id_on_another_partition_is_a_duplicate():
    event = survey(NOW - 60, 3)
    key, value = survey_record(event)
    again = orjson.dumps(event)
    home = canonical_partition(key, PARTITIONS)
    origin, owner = processor("surveys", off_home(key)), processor("surveys", home)
    owner.process(0, key, value, (), NOW)
    origin.process(0, key, again, (), NOW)
    (forward,) = origin.take_forwards()
    owner.process_forwarded(0, forward.key, forward.value, forward.headers, NOW)
    assert dict(owner.take_checkpoint(NOW).delta.totals) == {
        ("events", ("cx.surveys", "survey.submitted")): 1,
        ("duplicate", ("cx.surveys",)): 1,
    }


def test_a_forwarded_bad_record_is_dead_lettered_naming_where_it_was_produced():
    key, value = b"order-1", b"{not json"
    origin = processor("orders", off_home(key))
    origin.process(41, key, value, [("trace", b"x")], NOW)
    assert not origin.rejected  # not decoded where it landed: a cheap key check only
    (forward,) = origin.take_forwards()
    owner = processor("orders", forward.partition)
    owner.process_forwarded(3, forward.key, forward.value, forward.headers, NOW)
    (rejection,) = owner.rejected
    headers = dict(dead_letter_headers("cx.orders", forward.partition, rejection))
    assert headers["cx.error.partition"] == str(off_home(key)).encode()
    assert headers["cx.error.offset"] == b"41"
    assert headers["cx.error.topic"] == b"cx.orders"
    assert headers["trace"] == b"x"
    assert "cx.origin" not in headers


# -- whole pipeline, no broker: any placement gives the murmur2 numbers ---------------------
def story_records() -> list[tuple[str, bytes, bytes]]:
    """Every story of the integration tests, with resent duplicates, as (topic, key, value)."""
    orders_first, carts = cart_story(NOW)
    surveys = [survey(NOW - 60 * i, i % 11, kind="nps") for i in range(1, 20)]
    events = [*orders_first, *order_story(NOW), *carts, *ticket_story(NOW), *surveys]
    events += events[::7]  # the same event ids again: duplicates wherever they land
    routes = {"cart": "carts", "checkout": "carts", "order": "orders", "ticket": "tickets"}
    routes["survey"] = "surveys"
    records = []
    for event in events:
        topic = routes[event["event_type"].split(".")[0]]
        records.append((topic, event[KEY_FIELD[topic]].encode(), orjson.dumps(event)))
    return records


RECORDS = story_records()


@dataclass
class Part:
    """One source partition's processor and where it reads its three logs."""

    processor: PartitionProcessor
    source: int = 0
    forwarded: int = 0
    links: int = 0
    checkpoints: list[bytes] = field(default_factory=list)


class Cluster:
    """Source, repartition and link logs in lists; one processor per source partition."""

    def __init__(self, placed: list[tuple[str, int, bytes, bytes]]) -> None:
        self.sources: dict[tuple[str, int], list[tuple[bytes, bytes]]] = defaultdict(list)
        for topic, partition, key, value in placed:
            self.sources[(topic, partition)].append((key, value))
        self.repartition: dict[tuple[str, int], list[Any]] = defaultdict(list)
        self.links: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        self.parts = {(t, p): Part(processor(t, p)) for t in TOPICS for p in range(PARTITIONS)}
        self.view = View(window_specs(SETTINGS.window_seconds))

    def steps(self, where: tuple[str, int]) -> list[str]:
        part = self.parts[where]
        possible = ["flush", "crash", "crash_mid_flush"]
        if part.source < len(self.sources[where]):
            possible.append("source")
        if part.forwarded < len(self.repartition[where]):
            possible.append("forwarded")
        if where[0] == "carts" and part.links < len(self.links[where[1]]):
            possible.append("link")
        return possible

    def step(self, where: tuple[str, int], action: str, now: float = NOW) -> None:
        part = self.parts[where]
        proc = part.processor
        if action == "source":
            key, value = self.sources[where][part.source]
            proc.process(part.source, key, value, (), now)
            part.source += 1
        elif action == "forwarded":
            forward = self.repartition[where][part.forwarded]
            proc.process_forwarded(part.forwarded, forward.key, forward.value, forward.headers, now)
            part.forwarded += 1
        elif action == "link":
            key, value = self.links[where[1]][part.links]
            proc.process_link(part.links, key, value, now)
            part.links += 1
        elif action == "flush":
            self.flush(where, now, self.settled(where[0]))
        elif action == "crash":
            self.restart(where)
        elif action == "crash_mid_flush":  # forwards and links out, the checkpoint lost
            self.send_outputs(where)
            self.restart(where)

    def settled(self, topic: str) -> bool:
        """All traffic is produced up front: a topic is settled once every record it depends on
        was processed, checkpointed and forwarded home (pipeline/worker/settle.py)."""
        topics = ("carts", "orders") if topic == "carts" else (topic,)
        for (t, p), part in self.parts.items():
            if t not in topics:
                continue
            proc = part.processor
            if (proc.next_offset or 0) < len(self.sources[(t, p)]) or proc.forwards:
                return False
            if part.forwarded < len(self.repartition[(t, p)]):
                return False
            if t == "carts" and part.links < len(self.links[p]):
                return False
        return True

    def send_outputs(self, where: tuple[str, int]) -> None:
        proc = self.parts[where].processor
        for forward in proc.take_forwards():
            self.repartition[(where[0], forward.partition)].append(forward)
        for cart_id, time, order_id in proc.take_links():
            link = orjson.dumps({"t": time, "order": order_id})
            self.links[canonical_partition(cart_id.encode(), PARTITIONS)].append(
                (cart_id.encode(), link)
            )

    def flush(self, where: tuple[str, int], now: float, settled: bool) -> None:
        part = self.parts[where]
        part.processor.tick(now, now if settled else float("-inf"))
        self.send_outputs(where)
        checkpoint = part.processor.take_checkpoint(now)
        if checkpoint is not None:
            part.checkpoints.append(checkpoint.encode())
            self.view.apply(Checkpoint.decode(checkpoint.encode(), for_view=True))

    def restart(self, where: tuple[str, int]) -> None:
        part = self.parts[where]
        fresh = processor(*where)
        fresh.restore([Checkpoint.decode(c) for c in part.checkpoints], NOW)
        part.processor = fresh
        part.source = fresh.next_offset or 0
        part.forwarded = fresh.repartition_offset or 0
        part.links = fresh.link_offset or 0

    def run(self, rng: random.Random, steps: int) -> None:
        wheres = list(self.parts)
        for _ in range(steps):
            where = rng.choice(wheres)
            self.step(where, rng.choice(self.steps(where)))
        self.drain(NOW)
        self.drain(NOW + 10)  # cart decisions: past the quiet period, all settled

    def drain(self, now: float) -> None:
        for _ in range(20):
            busy = False
            for where in self.parts:
                while any(a in self.steps(where) for a in ("source", "forwarded", "link")):
                    busy = True
                    for action in ("source", "forwarded", "link"):
                        if action in self.steps(where):
                            self.step(where, action, now)
            for where in self.parts:
                self.flush(where, now, self.settled(where[0]))
            if not busy and all(self.settled(t) for t in TOPICS):
                for where in self.parts:  # one more round: decisions taken as settled
                    self.flush(where, now, True)
                return
        raise AssertionError("the simulated cluster never settled")

    def samples(self, now: float) -> Samples:
        families = [m for source in METRIC_SOURCES for m in source(self.view, now)]
        return samples_of([*families, *pipeline_counters(self.view, now)])


def misplaced_total(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "cx_events_misplaced_total")


def without_misplaced(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if k[0] != "cx_events_misplaced_total"}


def murmur2_run() -> Samples:
    placed = [(t, canonical_partition(k, PARTITIONS), k, v) for t, k, v in RECORDS]
    cluster = Cluster(placed)
    cluster.run(random.Random(0), 0)
    return cluster.samples(NOW + 10)


REFERENCE = murmur2_run()


def test_the_reference_run_has_every_family():
    names = {name for name, _ in REFERENCE}
    for family in ("cx_carts", "cx_orders", "cx_ttr_seconds", "cx_nps_score"):
        assert any(name.startswith(family) for name in names), family
    assert REFERENCE[("cx_events_duplicate_total", frozenset({"topic": "cx.tickets"}.items()))]
    assert misplaced_total(REFERENCE) == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3000))
def test_any_placement_and_interleaving_gives_the_murmur2_numbers(seed, steps):
    rng = random.Random(seed)
    placed = [(t, rng.randrange(PARTITIONS), k, v) for t, k, v in RECORDS]
    cluster = Cluster(placed)
    cluster.run(rng, steps)
    samples = cluster.samples(NOW + 10)
    assert without_misplaced(samples) == without_misplaced(REFERENCE)
    expected = sum(1 for t, p, k, _ in placed if p != canonical_partition(k, PARTITIONS))
    assert misplaced_total(samples) == expected


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"order-1", b'{"pad": "' + b"x" * SETTINGS.max_record_bytes + b'"}', "too_large"),
        (b"k" * (MAX_KEY_BYTES + 1), orjson.dumps(survey(NOW - 60, 3)), "wrong_topic"),
    ],
    ids=["value", "key"],
)
def test_a_record_rejected_wherever_it_lands_is_not_forwarded(key, value, reason):
    """A forward of an oversized record could pass the repartition topic's size limit, and a
    refused forward stalls every flush: it is rejected where it landed, as its owner would."""
    origin = processor("orders", off_home(key))
    origin.process(7, key, value, (), NOW)
    assert not origin.take_forwards()
    (rejection,) = origin.rejected
    assert (rejection.offset, rejection.reason, rejection.value) == (7, reason, value)
    owner = processor("orders", canonical_partition(key, PARTITIONS))
    owner.process(0, key, value, (), NOW)
    assert [r.reason for r in owner.rejected] == [reason]
