"""SLA timers against a brute-force oracle that scans every armed timer at every step."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.sla_timers import AT_RISK_HORIZON, ArmedTimer, Breach, SlaTimers

HOUR = AT_RISK_HORIZON


class ScanOracle:
    """The contract's definitions, evaluated by scanning: no heaps, no maintained counts."""

    def __init__(self, lateness: float) -> None:
        self.lateness = lateness
        self.clock = float("-inf")
        self.armed: dict[tuple[str, str], tuple[str, float]] = {}

    def arm(self, ticket_id: str, kind: str, channel: str, due_at: float) -> None:
        self.armed[(ticket_id, kind)] = (channel, due_at)

    def disarm(self, ticket_id: str, kind: str) -> bool:
        return self.armed.pop((ticket_id, kind), None) is not None

    def advance(self, now: float) -> list[Breach]:
        self.clock = max(self.clock, now)
        decided = sorted(
            Breach(ticket_id, kind, due_at)
            for (ticket_id, kind), (_, due_at) in self.armed.items()
            if self.clock > due_at + self.lateness
        )
        for breach in decided:
            del self.armed[(breach.ticket_id, breach.kind)]
        return sorted(decided, key=lambda breach: (breach.due_at, breach.ticket_id, breach.kind))

    def at_risk(self, now: float) -> dict[tuple[str, str], int]:
        self.clock = max(self.clock, now)
        return dict(
            Counter(
                (channel, kind)
                for (_, kind), (channel, due_at) in self.armed.items()
                if due_at - HOUR <= self.clock <= due_at
            )
        )


TICKETS = [f"t{number}" for number in range(8)]
KINDS = ["first_response", "resolution"]
CHANNELS = ["web", "email"]
# A coarse grid (10-minute steps) so due times, horizons and lateness collide with the clock.
instants = st.integers(0, 60).map(lambda step: step * 600.0)
operations = st.one_of(
    st.tuples(
        st.just("arm"),
        st.sampled_from(TICKETS),
        st.sampled_from(KINDS),
        st.sampled_from(CHANNELS),
        instants,
    ),
    st.tuples(st.just("disarm"), st.sampled_from(TICKETS), st.sampled_from(KINDS)),
    st.tuples(st.just("advance"), instants),
    st.tuples(st.just("at_risk"), instants),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0.0, 120.0, 600.0]), st.lists(operations, max_size=60))
def test_timers_match_the_scan_oracle(lateness, script):
    timers, oracle = SlaTimers(lateness=lateness), ScanOracle(lateness)
    for operation, *arguments in script:
        assert getattr(timers, operation)(*arguments) == getattr(oracle, operation)(*arguments)
        assert len(timers) == len(oracle.armed)
    assert sorted(timers.armed()) == sorted(
        ArmedTimer(ticket_id, kind, channel, due_at)
        for (ticket_id, kind), (channel, due_at) in oracle.armed.items()
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(operations, max_size=40),
    st.lists(operations, max_size=40),
    st.sampled_from([0.0, 120.0]),
)
def test_rebuilt_timers_continue_like_the_originals(before, after, lateness):
    original = SlaTimers(lateness=lateness)
    for operation, *arguments in before:
        getattr(original, operation)(*arguments)
    rebuilt = SlaTimers.rebuild(original.armed(), lateness=lateness)
    rebuilt.at_risk(original.clock)
    for operation, *arguments in after:
        assert getattr(rebuilt, operation)(*arguments) == getattr(original, operation)(*arguments)


def test_a_ticket_enters_at_risk_an_hour_before_due_and_breaches_after_lateness():
    timers = SlaTimers(lateness=120.0)
    timers.arm("t1", "first_response", "web", due_at=10_000.0)
    assert timers.at_risk(10_000.0 - HOUR - 1) == {}
    assert timers.at_risk(10_000.0 - HOUR) == {("web", "first_response"): 1}
    assert timers.advance(10_000.0) == []  # due now: a reply now is still in time
    assert timers.at_risk(10_000.0) == {("web", "first_response"): 1}
    assert timers.advance(10_060.0) == []  # passed, but a late reply may still arrive
    assert timers.at_risk(10_060.0) == {}
    assert timers.advance(10_120.0) == []
    assert timers.advance(10_120.5) == [Breach("t1", "first_response", 10_000.0)]
    assert len(timers) == 0


def test_a_reply_within_the_lateness_prevents_the_breach():
    timers = SlaTimers(lateness=120.0)
    timers.arm("t1", "resolution", "email", due_at=500.0)
    assert timers.advance(560.0) == []
    assert timers.disarm("t1", "resolution")
    assert timers.advance(10_000.0) == []
    assert not timers.disarm("t1", "resolution")


def test_the_clock_does_not_go_back():
    timers = SlaTimers(lateness=0.0)
    timers.arm("t1", "resolution", "web", due_at=5000.0)
    assert timers.at_risk(4000.0) == {("web", "resolution"): 1}
    assert timers.at_risk(0.0) == {("web", "resolution"): 1}  # a clock glitch changes nothing


def test_rearming_replaces_the_due_time():
    timers = SlaTimers(lateness=0.0)
    timers.arm("t1", "resolution", "web", due_at=1000.0)
    timers.arm("t1", "resolution", "web", due_at=9000.0)
    assert timers.advance(2000.0) == []
    assert timers.advance(9001.0) == [Breach("t1", "resolution", 9000.0)]


def test_mass_disarm_compacts_the_heaps_and_stays_exact():
    generator = random.Random(14)
    timers, oracle = SlaTimers(lateness=120.0), ScanOracle(120.0)
    for number in range(6000):
        due = generator.uniform(0, 20_000)
        timers.arm(f"t{number}", "resolution", "web", due)
        oracle.arm(f"t{number}", "resolution", "web", due)
    for number in range(5800):
        assert timers.disarm(f"t{number}", "resolution") == oracle.disarm(
            f"t{number}", "resolution"
        )
    assert len(timers._risk) + len(timers._decide) < 2 * 6000  # dead entries were dropped
    for now in range(0, 25_000, 500):
        assert timers.at_risk(float(now)) == oracle.at_risk(float(now))
        assert timers.advance(float(now)) == oracle.advance(float(now))
    assert len(timers) == len(oracle.armed) == 0
