"""Stage 1 without a broker: the partition processor, its checkpoints, and the view they feed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.aggregates.windows import window_specs
from pipeline.domain.surveys import SurveyHandler, nps_category
from pipeline.engine.checkpoint import Checkpoint, SequenceLedger
from pipeline.engine.dedupe import IdStore, id_hash, legacy_id_hash
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from pipeline.settings import Settings

NOW = 1_800_000_000.0
SETTINGS = Settings(bootstrap_servers="unused:9092")


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def survey_record(t: float, kind: str = "nps", score: int = 10, event_id: str | None = None):
    response_id = uuid.uuid4().hex
    event = {
        "event_id": event_id or uuid.uuid4().hex,
        "event_type": "survey.submitted",
        "occurred_at": rfc3339(t),
        "schema_version": 1,
        "source": "test",
        "response_id": response_id,
        "survey": kind,
        "score": score,
    }
    return response_id.encode(), orjson.dumps(event)


def processor() -> PartitionProcessor:
    return PartitionProcessor(
        topic="surveys",
        topic_name="cx.surveys",
        partition=0,
        handler=SurveyHandler(),
        settings=SETTINGS,
    )


def feed(proc: PartitionProcessor, records, start_offset: int = 0, now: float = NOW) -> None:
    for offset, (key, value) in enumerate(records, start=start_offset):
        proc.process(offset, key, value, (), now)


def view_of(*checkpoints: Checkpoint) -> View:
    view = View(window_specs(SETTINGS.window_seconds))
    for checkpoint in checkpoints:
        view.apply(checkpoint)
    return view


def test_nps_categories_follow_the_contract():
    assert [nps_category(s) for s in range(11)] == ["detractor"] * 7 + ["passive"] * 2 + [
        "promoter"
    ] * 2


def test_counts_duplicates_late_and_rejections():
    proc = processor()
    records = [survey_record(NOW - 60) for _ in range(3)]
    duplicate = survey_record(NOW - 60, event_id=orjson.loads(records[0][1])["event_id"])
    late = survey_record(NOW - 86_400 - 600)
    feed(proc, [*records, duplicate, late, (b"k", b"{nope")])
    checkpoint = proc.take_checkpoint(NOW)
    assert checkpoint is not None and checkpoint.next_offset == 6
    totals = dict(checkpoint.delta.totals)
    assert totals[("events", ("cx.surveys", "survey.submitted"))] == 4  # late ones included
    assert totals[("duplicate", ("cx.surveys",))] == 1
    assert totals[("late", ("cx.surveys",))] == 1
    assert totals[("rejected", ("cx.surveys", "invalid_json"))] == 1
    assert [r.offset for r in proc.rejected] == [5]
    view = view_of(checkpoint)
    spec = view.specs[0]
    assert view.window_value("nps", ("web", "promoter"), spec, NOW) == 3


@pytest.mark.parametrize("age", [86_400 - 30, 3 * 86_400])
def test_a_repeat_of_an_old_event_is_a_duplicate_after_its_first_arrival_is_checkpointed(age):
    """A backfill sent twice: the ids of events at or past the horizon are kept from arrival."""
    proc = processor()
    records = [survey_record(NOW - age) for _ in range(10)]
    feed(proc, records)
    first = proc.take_checkpoint(NOW)
    later = NOW + 300
    proc.tick(later)
    feed(proc, records, start_offset=10, now=later)
    second = proc.take_checkpoint(later)
    assert first is not None and second is not None
    assert dict(first.delta.totals)[("events", ("cx.surveys", "survey.submitted"))] == 10
    totals = dict(second.delta.totals)
    assert totals == {("duplicate", ("cx.surveys",)): 10}
    restored = processor()
    restored.restore([Checkpoint.decode(first.encode())], later)
    feed(restored, records, start_offset=10, now=later)
    assert dict(restored.take_checkpoint(later).delta.totals) == totals


def test_future_observations_wait_for_their_time():
    proc = processor()
    feed(proc, [survey_record(NOW + 30)])
    first = proc.take_checkpoint(NOW)
    assert first is not None and not first.delta.windowed and len(first.pending) == 2
    proc.tick(NOW + 31)
    second = proc.take_checkpoint(NOW + 31)
    assert second is not None and second.seq == first.seq + 1
    assert second.next_offset == first.next_offset  # timer-only: no new offsets
    view = view_of(first, second)
    assert view.window_value("nps", ("web", "promoter"), view.specs[0], NOW + 31) == 1


def test_replayed_offsets_are_skipped_after_restore():
    proc = processor()
    records = [survey_record(NOW - 10) for _ in range(5)]
    feed(proc, records)
    checkpoint = proc.take_checkpoint(NOW)
    assert checkpoint is not None
    wire = Checkpoint.decode(checkpoint.encode())

    restored = processor()
    restored.restore([wire, wire], NOW)  # a duplicate checkpoint in the log changes nothing
    assert restored.next_offset == 5 and restored.seq == 1
    feed(restored, records)  # the consumer re-delivers offsets 0..4
    assert restored.take_checkpoint(NOW) is None
    resent = survey_record(NOW - 10, event_id=orjson.loads(records[0][1])["event_id"])
    restored.process(5, *resent, (), NOW)  # an upstream duplicate at a new offset
    after = restored.take_checkpoint(NOW)
    assert after is not None and after.seq == 2
    assert dict(after.delta.totals) == {("duplicate", ("cx.surveys",)): 1}


def test_sequence_ledger_applies_each_number_once():
    ledger = SequenceLedger()
    make = lambda seq, partition=0: Checkpoint("t", partition, seq, 0, NOW)  # noqa: E731
    assert ledger.admit(make(1))
    assert not ledger.admit(make(1))
    assert ledger.admit(make(2))
    assert ledger.admit(make(1, partition=1))  # partitions are independent
    assert not ledger.admit(make(2))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10), st.integers(0, 30_000)), min_size=1, max_size=40),
    st.data(),
)
def test_view_equals_batch_of_all_records_whatever_the_checkpoint_split(scores_ages, data):
    """Splitting the same records into checkpoints differently gives identical windows."""
    records = [survey_record(NOW - age, "nps", score) for score, age in scores_ages]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records)), max_size=5)))
    proc = processor()
    checkpoints, start = [], 0
    for cut in [*cuts, len(records)]:
        feed(proc, records[start:cut], start_offset=start)
        start = cut
        checkpoint = proc.take_checkpoint(NOW)
        if checkpoint is not None:
            checkpoints.append(checkpoint)
    whole = processor()
    feed(whole, records)
    reference = view_of(whole.take_checkpoint(NOW))
    split = view_of(*checkpoints, *checkpoints)  # re-reading the log applies nothing twice
    for spec in reference.specs:
        for category in ("promoter", "passive", "detractor"):
            labels = ("web", category)
            assert split.window_value("nps", labels, spec, NOW) == reference.window_value(
                "nps", labels, spec, NOW
            )
    expected_promoters = sum(1 for score, age in scores_ages if score >= 9 and age < 300)
    got = split.window_value("nps", ("web", "promoter"), split.specs[0], NOW)
    # 5m window may include up to one extra 10 s bucket at its lower edge
    assert (got or 0) >= expected_promoters


def test_id_store_forgets_after_horizon_and_round_trips():
    store = IdStore(horizon=3600)
    old, new = id_hash("a"), id_hash("b")
    assert store.admit(old, NOW - 7200) and store.admit(new, NOW - 60)
    assert not store.admit(new, NOW - 30)  # a repeat is refused, whatever its time
    packed = store.take_added()
    store.expire(NOW)
    assert not store.seen(old) and store.seen(new)
    copy = IdStore(horizon=3600)
    copy.restore(packed, NOW)
    assert not copy.seen(old) and copy.seen(new) and len(copy) == 1


def _untagged_blake2b_checkpoint(proc: PartitionProcessor, event_ids: list[str]) -> bytes:
    """What a worker before the ``idh`` tag wrote: blake2b ids, no tag in the second line."""
    checkpoint = proc.take_checkpoint(NOW)
    assert checkpoint is not None
    legacy = IdStore(horizon=SETTINGS.effective_dedupe_horizon)
    for event_id in event_ids:
        legacy.admit(legacy_id_hash(event_id), NOW - 10)
    checkpoint.ids = legacy.take_added()
    head, tail, state = checkpoint.encode().split(b"\n")
    old_tail = orjson.loads(tail)
    del old_tail["idh"]
    return b"\n".join((head, orjson.dumps(old_tail), state))


def test_checkpoints_from_before_the_hash_tag_still_dedupe_after_restore():
    ids = ["old-1", "old-2"]
    records = [survey_record(NOW - 10, event_id=event_id) for event_id in ids]
    proc = processor()
    feed(proc, records)
    wire = _untagged_blake2b_checkpoint(proc, ids)
    restored = processor()
    restored.restore([Checkpoint.decode(wire)], NOW)
    feed(restored, [*records, survey_record(NOW - 5, event_id="new-1")], start_offset=2)
    checkpoint = restored.take_checkpoint(NOW)
    assert checkpoint is not None and checkpoint.id_hash == "xxh3"
    assert checkpoint.delta.totals[("duplicate", ("cx.surveys",))] == 2
    assert restored.ids.seen(id_hash("new-1")) and not restored.ids.seen(id_hash("old-1"))
    restored.take_checkpoint(NOW + SETTINGS.effective_dedupe_horizon + 120)
    assert restored.legacy_ids is None  # past the horizon: one hash per event again


@pytest.mark.parametrize("text", ["5m,1h,24h", "24h,5m"])
def test_window_settings_parse(text):
    assert Settings(windows=text).window_seconds[0] == 300


def test_views_decode_only_what_they_apply_and_recovery_gets_everything():
    proc = processor()
    feed(proc, [survey_record(NOW - 10), survey_record(NOW + 30)])
    checkpoint = proc.take_checkpoint(NOW)
    assert checkpoint is not None and checkpoint.ids and checkpoint.pending
    wire = checkpoint.encode()
    full = Checkpoint.decode(wire)
    assert (full.ids, full.entity_state(), full.pending, full.seq) == (
        checkpoint.ids,
        checkpoint.state,
        checkpoint.pending,
        checkpoint.seq,
    )
    light = Checkpoint.decode(wire, for_view=True)
    assert light.delta.to_wire() == checkpoint.delta.to_wire() and light.seq == checkpoint.seq
    assert not light.ids and not light.pending
