"""Tickets: TTR, first response, reopens and the backlog (CONTRACT.md "Metric definitions").

Handlers are driven through the real PartitionProcessor with encoded records; the exported
families are compared with a naive calculation written here from the raw event list.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregates.windows import window_specs
from pipeline.domain.tickets import (
    BUCKET_LABELS,
    TTR_BUCKETS,
    TicketHandler,
    metrics,
    ttr_buckets_of,
)
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from schemas import decode_record
from tests.oracle import WINDOWS
from tests.unit.domain_support import (
    NOW,
    SETTINGS,
    DomainRun,
    as_applied,
    exposition,
    fold,
    key,
    make_processor,
    named,
    promtool_check,
    samples_of,
)

QUANTILES = (0.5, 0.9, 0.99)
OPENED, REPLIED, RESOLVED, REOPENED = (
    "ticket.opened",
    "ticket.agent_replied",
    "ticket.resolved",
    "ticket.reopened",
)

Event = tuple[str, str, float, str]
"""(event type, ticket id, event time, channel) in arrival order."""


# -- helpers ------------------------------------------------------------------------------------
def record(kind: str, ticket_id: str, t: float, channel: str = "web") -> tuple[bytes, bytes]:
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "event_type": kind,
        "occurred_at": datetime.fromtimestamp(t, UTC).isoformat(),
        "schema_version": 1,
        "source": "test",
        "channel": channel,
        "ticket_id": ticket_id,
    }
    if kind == OPENED:
        body["priority"] = "normal"
    return ticket_id.encode(), orjson.dumps(body)


def processor(**handler_args: float) -> PartitionProcessor:
    return make_processor("tickets", TicketHandler(**handler_args))


class Run(DomainRun):
    def __init__(self, **handler_args: float) -> None:
        super().__init__(processor(**handler_args), metrics, lambda event: record(*event))


def approx(value: float) -> Any:
    """Within the sketch's guaranteed 2% relative error."""
    return pytest.approx(value, rel=0.02)


def exact_quantile(values: list[float], q: float) -> float:
    """The value at rank ceil(q * n) of the sorted values (1-based)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


# -- the independent calculation ----------------------------------------------------------------
def oracle(events: list[Event]) -> dict[str, Any]:
    """Observations per the contract, walking each ticket's events in arrival order."""
    by_ticket: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_ticket[event[1]].append(event)
    ttr, frt, reopens = [], [], []
    backlog: dict[str, int] = defaultdict(int)
    for ticket_events in by_ticket.values():
        opened = [e for e in ticket_events if e[0] == OPENED]
        if not opened:
            continue
        _, _, opened_at, channel = opened[0]
        is_open, resolved, replied = True, False, False
        for kind, _, t, _ in ticket_events:
            if kind == REPLIED and not replied:
                replied = True
                frt.append((channel, t, max(0.0, t - opened_at)))
            elif kind == RESOLVED and is_open:
                is_open = False
                if not resolved:
                    resolved = True
                    ttr.append((channel, t, max(0.0, t - opened_at)))
            elif kind == REOPENED and not is_open:
                is_open = True
                reopens.append((channel, t))
        backlog[channel] += is_open
    return {"ttr": ttr, "frt": frt, "reopens": reopens, "backlog": dict(backlog)}


def in_window(t: float, length: float, now: float = NOW) -> bool:
    return now - length < t <= now


def check_against_oracle(samples: dict, events: list[Event], now: float = NOW) -> None:
    expected = oracle(events)
    channels = {e[3] for e in events}
    for family, kind in (("cx_ttr_seconds", "ttr"), ("cx_first_response_seconds", "frt")):
        got = named(samples, family)
        want_keys = set()
        for window, length in WINDOWS.items():
            for channel in channels:
                values = [
                    v for ch, t, v in expected[kind] if ch == channel and in_window(t, length)
                ]
                for q in QUANTILES:
                    labels = key(window=window, channel=channel, quantile=format(q, "g"))
                    if not values:
                        assert labels not in got, f"empty window must be absent: {labels}"
                        continue
                    want_keys.add(labels)
                    exact = exact_quantile(values, q)
                    assert abs(got[labels] - exact) <= 0.02 * exact + 1e-3, (labels, exact)
        assert set(got) == want_keys
    for family, observed in (
        ("cx_tickets_resolved", [(ch, t) for ch, t, _ in expected["ttr"]]),
        ("cx_tickets_reopened", expected["reopens"]),
    ):
        want = {}
        for window, length in WINDOWS.items():
            for channel in channels:
                n = sum(1 for ch, t in observed if ch == channel and in_window(t, length))
                if n:
                    want[key(window=window, channel=channel)] = n
        assert named(samples, family) == want, family
    backlog = named(samples, "cx_tickets_open")
    for channel in channels:
        assert backlog.get(key(channel=channel), 0) == expected["backlog"].get(channel, 0)
    histogram_count = named(samples, "cx_ticket_resolution_seconds_count")
    for channel in channels:
        ttrs = [v for ch, _, v in expected["ttr"] if ch == channel]
        assert histogram_count.get(key(channel=channel), 0) == len(ttrs)


# -- scenarios ----------------------------------------------------------------------------------
def test_reopened_ticket_is_back_in_backlog_counted_once_in_ttr():
    run = Run().feed([(OPENED, "t1", NOW - 3000, "email"), (RESOLVED, "t1", NOW - 2400, "email")])
    assert named(run.samples(), "cx_tickets_open") == {key(channel="email"): 0}
    run.feed([(REOPENED, "t1", NOW - 1200, "email")])
    samples = run.samples()
    assert named(samples, "cx_tickets_open") == {key(channel="email"): 1}
    assert named(samples, "cx_tickets_reopened") == {
        key(window="1h", channel="email"): 1,
        key(window="24h", channel="email"): 1,
    }
    run.feed([(RESOLVED, "t1", NOW - 600, "email"), (RESOLVED, "t1", NOW - 500, "email")])
    samples = run.samples()
    assert named(samples, "cx_tickets_open") == {key(channel="email"): 0}
    assert named(samples, "cx_tickets_resolved") == {
        key(window="1h", channel="email"): 1,
        key(window="24h", channel="email"): 1,
    }
    ttr = named(samples, "cx_ttr_seconds")
    assert set(ttr.values()) and all(abs(v - 600) <= 6 for v in ttr.values())  # first resolution
    assert named(samples, "cx_ticket_resolution_seconds_count") == {key(channel="email"): 1}


def test_ticket_without_reply_has_no_first_response():
    samples = Run().feed([(OPENED, "t1", NOW - 100, "chat")]).samples()
    assert named(samples, "cx_first_response_seconds") == {}
    assert named(samples, "cx_ttr_seconds") == {}
    assert named(samples, "cx_tickets_open") == {key(channel="chat"): 1}
    samples = (
        Run()
        .feed([(OPENED, "t1", NOW - 200, "chat"), (RESOLVED, "t1", NOW - 100, "chat")])
        .samples()
    )
    assert named(samples, "cx_first_response_seconds") == {}
    assert named(samples, "cx_ttr_seconds")[key(window="5m", channel="chat", quantile="0.5")]


def test_only_the_first_reply_counts():
    events = [
        (OPENED, "t1", NOW - 250, "web"),
        (REPLIED, "t1", NOW - 200, "web"),
        (REPLIED, "t1", NOW - 10, "web"),
    ]
    frt = named(Run().feed(events).samples(), "cx_first_response_seconds")
    assert frt and all(abs(v - 50) <= 1 for v in frt.values())


def test_events_before_opened_are_applied_with_their_own_times():
    run = Run().feed(
        [
            (REPLIED, "t1", NOW - 100, "web"),
            (RESOLVED, "t1", NOW - 50, "web"),
            (REOPENED, "t1", NOW - 40, "web"),
        ],
    )
    samples = run.samples()
    assert named(samples, "cx_ttr_seconds") == {}
    assert named(samples, "cx_tickets_open") == {}  # not a ticket yet
    run.feed([(OPENED, "t1", NOW - 400, "mobile_app")])  # the opened event's channel wins
    samples = run.samples()
    frt = named(samples, "cx_first_response_seconds")
    ttr = named(samples, "cx_ttr_seconds")
    assert frt[key(window="5m", channel="mobile_app", quantile="0.5")] == approx(300)
    assert ttr[key(window="5m", channel="mobile_app", quantile="0.5")] == approx(350)
    assert named(samples, "cx_tickets_open") == {key(channel="mobile_app"): 1}  # reopened
    assert named(samples, "cx_tickets_reopened")[key(window="5m", channel="mobile_app")] == 1


def test_resolution_in_5m_versus_24h_windows():
    events = [
        (OPENED, "recent", NOW - 900, "web"),
        (RESOLVED, "recent", NOW - 120, "web"),  # 13 min TTR, in every window
        (OPENED, "older", NOW - 4000, "web"),
        (RESOLVED, "older", NOW - 600, "web"),  # 10 min ago: 1h and 24h, not 5m
        (OPENED, "old", NOW - 80_000, "web"),
        (RESOLVED, "old", NOW - 7200, "web"),  # 2 h ago: 24h only
    ]
    samples = Run().feed(events).samples()
    resolved = named(samples, "cx_tickets_resolved")
    assert resolved == {
        key(window="5m", channel="web"): 1,
        key(window="1h", channel="web"): 2,
        key(window="24h", channel="web"): 3,
    }
    ttr = named(samples, "cx_ttr_seconds")
    assert ttr[key(window="5m", channel="web", quantile="0.99")] == approx(780)
    assert ttr[key(window="24h", channel="web", quantile="0.99")] == approx(72_800)
    check_against_oracle(samples, events)


def test_empty_windows_are_absent_but_levels_stay():
    events = [
        (OPENED, "a", NOW - 600, "web"),
        (REPLIED, "a", NOW - 500, "web"),
        (RESOLVED, "a", NOW - 400, "web"),
        (REOPENED, "a", NOW - 300, "web"),
    ]
    run = Run().feed(events)
    later = NOW + 3 * 86_400
    samples = run.samples(later)
    for family in (
        "cx_ttr_seconds",
        "cx_first_response_seconds",
        "cx_tickets_resolved",
        "cx_tickets_reopened",
    ):
        assert named(samples, family) == {}, family
    assert named(samples, "cx_tickets_open") == {key(channel="web"): 1}
    assert named(samples, "cx_ticket_resolution_seconds_count") == {key(channel="web"): 1}
    assert named(run.samples(), "cx_ttr_seconds")  # present at NOW: the test can fail


def test_histogram_is_cumulative_and_valid_exposition():
    ttrs = [30.0, 60.0, 61.0, 500.0, 90_000.0, 1_000_000.0]
    events: list[Event] = []
    for i, seconds in enumerate(ttrs):
        resolved_at = NOW - 100 - i
        events += [
            (OPENED, f"t{i}", resolved_at - seconds, "call_center"),
            (RESOLVED, f"t{i}", resolved_at, "call_center"),
        ]
    run = Run()
    for event in events:  # the 1,000,000 s ticket opened 11.6 days before its resolution
        run.proc.handler.handle(decoded(event), run.proc.out)
    run.proc.tick(NOW)
    run.view.apply(run.proc.take_checkpoint(NOW))
    samples = run.samples()
    buckets = named(samples, "cx_ticket_resolution_seconds_bucket")
    want = {le: sum(1 for v in ttrs if v <= float(le)) for le in BUCKET_LABELS}
    want["+Inf"] = len(ttrs)
    assert buckets == {key(channel="call_center", le=le): n for le, n in want.items()}
    assert want["60"] == 2 and want["86400"] == 4 and want["604800"] == 5
    assert named(samples, "cx_ticket_resolution_seconds_sum") == {
        key(channel="call_center"): approx(sum(ttrs))
    }
    text = exposition(metrics, run.view)
    assert "# TYPE cx_ticket_resolution_seconds histogram" in text
    assert 'cx_ticket_resolution_seconds_bucket{channel="call_center",le="+Inf"} 6.0' in text
    promtool_check(text)


def test_bucket_labels_and_membership():
    assert BUCKET_LABELS[0] == "60" and BUCKET_LABELS[-1] == "604800"
    assert list(TTR_BUCKETS) == sorted(TTR_BUCKETS)
    assert ttr_buckets_of(300.0) == list(BUCKET_LABELS[1:])
    assert ttr_buckets_of(10**7) == []


def decoded(event: Event) -> Any:
    kind, ticket_id, t, channel = event
    return decode_record("tickets", *record(kind, ticket_id, t, channel), now=NOW)


def test_full_exposition_passes_promtool():
    events = [
        (OPENED, "a", NOW - 600, "web"),
        (REPLIED, "a", NOW - 500, "web"),
        (RESOLVED, "a", NOW - 400, "web"),
        (REOPENED, "a", NOW - 300, "web"),
        (OPENED, "b", NOW - 100, "chat"),
    ]
    text = exposition(metrics, Run().feed(events).view)
    for name in ("cx_tickets_resolved", "cx_tickets_reopened", "cx_tickets_open"):
        assert f"# TYPE {name} gauge" in text
    for name in ("cx_ttr_seconds", "cx_first_response_seconds"):  # sliding-window summaries
        assert f"# TYPE {name} summary" in text
    assert 'cx_tickets_open{channel="chat"} 1.0' in text
    promtool_check(text)


# -- random traffic against the oracle -----------------------------------------------------------
EDGES = [length for length in WINDOWS.values()]


def safe_age(rng: random.Random, low: float, high: float) -> float:
    """An age away from every window's lower edge (bucketing may widen it by one bucket)."""
    while True:
        age = round(rng.uniform(low, high), 3)
        if all(not (edge - 5 <= age <= edge + 65) for edge in EDGES):
            return age


def random_traffic(seed: int, tickets: int) -> list[Event]:
    """Tickets with replies, resolutions and reopens; within a ticket arrival is shuffled a bit."""
    rng = random.Random(seed)
    events: list[Event] = []
    channels = ["web", "chat", "email"]
    for i in range(tickets):
        ticket_id, channel = f"t{i}", rng.choice(channels)
        opened_age = safe_age(rng, 0, 86_000)
        mine: list[Event] = [(OPENED, ticket_id, NOW - opened_age, channel)]
        age = opened_age
        for _ in range(rng.randint(0, 5)):
            age = safe_age(rng, 0, age)
            kind = rng.choice([REPLIED, REPLIED, RESOLVED, RESOLVED, REOPENED])
            mine.append((kind, ticket_id, NOW - age, rng.choice(channels)))
        if rng.random() < 0.2:
            mine.append(mine[0])  # a second ticket.opened (new event id) is ignored
        if rng.random() < 0.3:
            rng.shuffle(mine)  # out of order: events before their ticket.opened
        events.extend(mine)
    return events


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 60), st.integers(1, 4))
def test_metrics_match_brute_force(seed, tickets, flushes):
    events = random_traffic(seed, tickets)
    run = Run()
    step = max(1, len(events) // flushes)
    batches = [events[start : start + step] for start in range(0, len(events), step)]
    for batch in batches:
        run.feed(batch)
    check_against_oracle(run.samples(), as_applied(batches, TicketHandler.ordered_types))


def test_oracle_check_can_fail():
    """The oracle comparison is not vacuous: dropping one resolution is detected."""
    events = random_traffic(7, 40)
    samples = Run().feed(events).samples()
    events = as_applied([events], TicketHandler.ordered_types)
    check_against_oracle(samples, events)
    tampered = [
        *events,
        (OPENED, "extra", NOW - 1000, "web"),
        (RESOLVED, "extra", NOW - 100, "web"),
    ]
    try:
        check_against_oracle(samples, tampered)
    except AssertionError:
        return
    raise AssertionError("tampered events passed the oracle check")


# -- forgetting ----------------------------------------------------------------------------------
def test_resolved_tickets_and_orphans_are_forgotten_open_ones_kept():
    run = Run(retention=3600.0, orphan_retention=1800.0)
    run.feed(
        [
            (OPENED, "done", NOW - 500, "web"),
            (RESOLVED, "done", NOW - 400, "web"),
            (OPENED, "open", NOW - 500, "web"),
            (REPLIED, "orphan", NOW - 300, "web"),
            (REPLIED, "done", NOW - 450, "web"),  # an older event time does not shorten it
        ]
    )
    handler = run.proc.handler
    assert set(handler.tickets) == {"done", "open", "orphan"}
    run.feed([], now=NOW + 1600)
    assert set(handler.tickets) == {"done", "open"}
    run.feed([], now=NOW + 3175)
    assert set(handler.tickets) == {"done", "open"}
    run.feed([], now=NOW + 3300)
    assert set(handler.tickets) == {"open"}
    # documented consequence: a reopen after the retention finds no ticket
    run.feed([(REOPENED, "done", NOW + 3300, "web")], now=NOW + 3300)
    assert named(run.samples(NOW + 3300), "cx_tickets_open") == {key(channel="web"): 1}
    assert named(run.samples(NOW + 3300), "cx_tickets_reopened") == {}


def test_take_changes_reports_upserts_and_deletes():
    handler = TicketHandler(retention=10.0)
    run = Run()
    run.proc.handler = handler
    run.feed([(OPENED, "x", NOW - 50, "web"), (RESOLVED, "x", NOW - 40, "web")], now=NOW - 40)
    assert handler.take_changes() == {}  # already taken by the checkpoint
    run.proc.tick(NOW)
    assert handler.take_changes() == {"t": {"x": None}}
    assert handler.take_changes() == {}


# -- checkpoint/restore round trip ---------------------------------------------------------------
def stream(seed: int, n: int) -> list[tuple[float, bytes, bytes]]:
    """(wall clock, key, value): random ticket events, some future-dated, some duplicated."""
    rng = random.Random(seed)
    records: list[tuple[float, bytes, bytes]] = []
    kinds = [OPENED, OPENED, REPLIED, RESOLVED, RESOLVED, REOPENED]
    for i in range(n):
        wall = NOW + 60 * i
        if records and rng.random() < 0.05:
            records.append((wall, *records[rng.randrange(len(records))][1:]))
            continue
        t = wall - rng.uniform(-200, 3000)
        records.append(
            (
                wall,
                *record(rng.choice(kinds), f"t{rng.randrange(12)}", t, rng.choice(["web", "chat"])),
            )
        )
    return records


HANDLER_ARGS = {"retention": 1200.0, "orphan_retention": 900.0}


def tickets_state(proc: PartitionProcessor) -> dict:
    return {tid: t.to_wire() for tid, t in proc.handler.tickets.items()}


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32),
    st.integers(5, 80),
    st.data(),
)
def test_checkpoint_restore_round_trip_is_invisible(seed, n, data):
    records = stream(seed, n)
    reference = processor(**HANDLER_ARGS)
    for offset, (wall, k, v) in enumerate(records):
        reference.process(offset, k, v, (), wall)
        reference.tick(wall)
    last = records[-1][0]
    ref_checkpoint = reference.take_checkpoint(last)
    assert ref_checkpoint is not None

    cuts = data.draw(st.sets(st.integers(0, n - 1)))
    crashes = set(data.draw(st.sets(st.integers(0, n - 1), max_size=4)))
    log: list[Checkpoint] = []
    proc = processor(**HANDLER_ARGS)
    i = 0
    while i < n:
        wall, k, v = records[i]
        proc.process(i, k, v, (), wall)
        proc.tick(wall)
        if i in cuts:
            checkpoint = proc.take_checkpoint(wall)
            if checkpoint is not None:
                log.append(Checkpoint.decode(checkpoint.encode()))
        if i in crashes:  # lose everything since the last checkpoint, resume from the log
            crashes.discard(i)
            proc = processor(**HANDLER_ARGS)
            proc.restore(log, wall)
            i = proc.next_offset or 0
            continue
        i += 1
    final = proc.take_checkpoint(last)
    if final is not None:
        log.append(final)

    assert fold(log) == fold([ref_checkpoint])
    assert sorted(map(orjson.dumps, proc.out.pending_to_wire())) == sorted(
        map(orjson.dumps, reference.out.pending_to_wire())
    )
    assert tickets_state(proc) == tickets_state(reference)
    rebuilt = processor(**HANDLER_ARGS)
    rebuilt.restore(log, last)
    assert tickets_state(rebuilt) == tickets_state(reference)
    views = []
    for checkpoints in (log, [ref_checkpoint]):
        view = View(window_specs(SETTINGS.window_seconds))
        for checkpoint in checkpoints:
            view.apply(checkpoint)
        views.append(samples_of(metrics(view, last)))
    assert views[0] == views[1]


def test_histogram_sum_is_decimal_running_total():
    run = Run().feed([(OPENED, "a", NOW - 100.1234, "web"), (RESOLVED, "a", NOW - 0.1, "web")])
    totals = dict(run.view.totals_named("ttr_hist_sum"))
    assert totals == {("web",): Decimal("100.023")}
