"""SLA metrics, at-risk and breach signals of the ticket handler against a brute-force oracle.

The scenarios cross nights, lunch gaps, weekends, holidays and both DST changes of
Europe/Berlin (with business hours on the Sunday of each change, and ranges touching midnight),
driven through the real PartitionProcessor and View. The oracle (tests/oracle.py) replays the
same arrivals and clock ticks with the contract's rules and business time counted minute by
minute; it shares no code with the pipeline.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pipeline.aggregates.windows import window_specs
from pipeline.domain.sla_policy import DEFAULT_POLICY, load_policy
from pipeline.domain.tickets import Ticket, TicketHandler, metrics
from pipeline.engine.checkpoint import Checkpoint
from pipeline.engine.partition import PartitionProcessor
from pipeline.engine.view import View
from schemas.signals import SIGNAL_ADAPTER, TicketSlaBreached, signal_id
from tests.oracle import WINDOWS, epoch, sla_expectations, sla_timeline
from tests.unit.domain_support import SETTINGS, make_processor, samples_of

LATENESS, QUIET = 120.0, 5.0
POLICY_YAML = """\
timezone: Europe/Berlin
business_hours:
  mon: ["00:00-01:00", "09:00-12:00", "13:00-17:00"]
  tue: ["09:00-12:00", "13:00-17:00"]
  wed: ["09:00-12:00", "13:00-17:00"]
  thu: ["09:00-12:00", "13:00-17:00"]
  fri: ["09:00-12:00", "13:00-17:00"]
  sat: ["10:00-14:00"]
  sun: ["01:00-04:00", "22:00-24:00"]
holidays: ["2027-03-29", "2027-11-01"]
targets:
  first_response: {urgent: 1800, high: 3600, normal: 7200, low: 14400}
  resolution: {urgent: 7200, high: 14400, normal: 28800, low: 57600}
"""
SPRING = epoch("2027-03-26T06:00:00+01:00")
"""Friday before the spring DST change (Sunday 28th) and Easter Monday (a holiday)."""
AUTUMN = epoch("2027-10-29T06:00:00+02:00")
"""Friday before the autumn DST change (Sunday 31st) and 1 November (a holiday)."""
SLA_FAMILIES = (
    "cx_sla_met",
    "cx_sla_breached",
    "cx_sla_attainment_ratio",
    "cx_tickets_at_risk",
    "cx_tickets_at_risk_by_priority",
    "cx_first_response_business_seconds",
    "cx_ttr_business_seconds",
)
COUNTS = ("cx_sla_met", "cx_sla_breached", "cx_tickets_at_risk", "cx_tickets_at_risk_by_priority")
"""Families whose zero may also be absent (CONTRACT.md)."""
PRIORITY_WEIGHTS = {"urgent": 1, "high": 3, "normal": 5, "low": 2}


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sla") / "policy.yml"
    path.write_text(POLICY_YAML)
    return path


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def event(kind: str, ticket_id: str, t: float, **fields: Any) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "event_type": kind,
        "occurred_at": iso(t),
        "schema_version": 1,
        "source": "test",
        "channel": fields.pop("channel", "web"),
        "ticket_id": ticket_id,
        **fields,
    }


def opened(ticket_id: str, t: float, priority: str = "urgent", **fields: Any) -> dict:
    return event("ticket.opened", ticket_id, t, priority=priority, **fields)


class SlaRun:
    """A tickets partition fed arrivals at their wall-clock times, checkpointed into a view."""

    def __init__(self, policy_path: Path | None, processor: PartitionProcessor | None = None):
        self.policy_path = policy_path
        self.proc = processor or self.new_processor()
        self.view = View(window_specs(SETTINGS.window_seconds))
        self.offset = 0
        self.checkpoints: list[Checkpoint] = []
        self.signals: list[tuple[str, dict]] = []
        self.feeds: list[float] = []

    def new_processor(self) -> PartitionProcessor:
        policy = load_policy(self.policy_path)
        handler = TicketHandler(policy=policy, lateness=LATENESS, quiet=QUIET)
        return make_processor("tickets", handler)

    def feed(self, events: list[dict], now: float) -> SlaRun:
        for body in events:
            self.proc.process(self.offset, body["ticket_id"].encode(), orjson.dumps(body), (), now)
            self.offset += 1
        self.proc.tick(now)
        self.feeds.append(now)
        self.signals += self.proc.take_signals()
        checkpoint = self.proc.take_checkpoint(now)
        if checkpoint is not None:
            decoded = Checkpoint.decode(checkpoint.encode())
            self.checkpoints.append(decoded)
            self.view.apply(decoded)
        return self

    def restart(self) -> None:
        """A SIGKILL after the last checkpoint: a fresh processor restored from the log."""
        self.proc = self.new_processor()
        self.proc.restore(self.checkpoints, self.feeds[-1])

    def sla_samples(self, now: float) -> dict:
        samples = samples_of(metrics(self.view, now))
        return {
            (name, labels): value
            for (name, labels), value in samples.items()
            if name in SLA_FAMILIES and (value != 0 or name not in COUNTS)
        }


def compare(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected), (
        f"missing {sorted(set(expected) - set(actual), key=str)[:5]}, "
        f"unexpected {sorted(set(actual) - set(expected), key=str)[:5]}"
    )
    for key, value in expected.items():
        tolerance = 0.02 if key[0].endswith("business_seconds") else 1e-9
        assert actual[key] == pytest.approx(value, rel=tolerance, abs=1e-9), key


# -- random scenarios against the oracle ------------------------------------------------------
def scenario(seed: int, start: float, tickets: int = 45) -> list[tuple[float, dict]]:
    """(arrival time, event): tickets opened over 60 h, some replies arriving late."""
    rng = random.Random(seed)
    arrivals: list[tuple[float, dict]] = []
    priorities = list(PRIORITY_WEIGHTS)
    for n in range(tickets):
        ticket_id = f"t{seed}-{n}"
        channel = rng.choice(("web", "email"))
        at = start + 60 * rng.randrange(60 * 60)
        priority = rng.choices(priorities, weights=list(PRIORITY_WEIGHTS.values()))[0]
        arrivals.append((at, opened(ticket_id, at, priority, channel=channel)))
        reply = (
            at + 60 * rng.choice((1, 10, 25, 59, 90, 200, 600, 2000))
            if rng.random() < 0.8
            else None
        )
        if reply is not None:
            delay = 60 * rng.choice((0, 0, 0, 1, 3))  # arrives after due: within lateness or not
            arrivals.append((reply + delay, event("ticket.agent_replied", ticket_id, reply)))
        if rng.random() < 0.7:
            resolved = at + 60 * rng.choice((20, 100, 400, 900, 1500, 3000))
            arrivals.append((resolved, event("ticket.resolved", ticket_id, resolved)))
            if rng.random() < 0.2:
                again = resolved + 60 * rng.randrange(1, 300)
                arrivals.append((again, event("ticket.reopened", ticket_id, again)))
    return sorted(arrivals, key=lambda item: item[0])


def run_scenario(
    policy_path: Path,
    arrivals: list[tuple[float, dict]],
    start: float,
    *,
    crash_at: int = -1,
    check: bool = True,
) -> tuple[SlaRun, list[tuple[float, dict]]]:
    """Feed arrivals at their times and tick every 5 min (at :30 s) for 5 days; check the
    SLA metrics against the oracle every 9 h. ``crash_at``: restart after that many feeds."""
    run = SlaRun(policy_path)
    policy = yaml.safe_load(POLICY_YAML) if policy_path else {"targets": DEFAULT_TARGETS}
    by_time: dict[float, list[dict]] = {}
    for at, body in arrivals:
        by_time.setdefault(at, []).append(body)
    ticks = [start + 30 + 300 * n for n in range(5 * 288)]
    checks = set(ticks[::108]) if check else set()
    for now in sorted(set(by_time) | set(ticks)):
        run.feed(by_time.get(now, []), now)
        if len(run.feeds) == crash_at:
            run.restart()
        if now in checks:
            done = [(t, body) for t, body in arrivals if t <= now]
            timeline = sla_timeline(done, run.feeds, policy, LATENESS, QUIET)
            compare(run.sla_samples(now), sla_expectations(timeline, now, WINDOWS))
    timeline = sla_timeline(arrivals, run.feeds, policy, LATENESS, QUIET)
    return run, timeline["signals"]


DEFAULT_TARGETS = {kind: dict(per) for kind, per in DEFAULT_POLICY.targets.items()}


@pytest.mark.parametrize("start", [SPRING, AUTUMN], ids=["spring-dst", "autumn-dst"])
@pytest.mark.parametrize("seed", [1, 2])
def test_sla_metrics_and_signals_match_the_oracle(policy_file, seed, start):
    run, expected_signals = run_scenario(policy_file, scenario(seed, start), start)
    assert expected_signals, "the scenario must contain breaches"
    got = [(s["ticket_id"], s["kind"], s["priority"], epoch(s["due_at"])) for _, s in run.signals]
    assert sorted(got) == sorted(expected_signals)


def test_calendar_time_default_policy_matches_the_oracle():
    run_scenario(None, scenario(3, SPRING), SPRING)  # type: ignore[arg-type]


def test_a_restart_mid_run_changes_nothing(policy_file):
    """Due times, outcomes and exported at-risk counts ride in the checkpoints."""
    arrivals = scenario(4, SPRING)
    whole, _ = run_scenario(policy_file, arrivals, SPRING, check=False)
    for crash_at in (200, 700):
        crashed, _ = run_scenario(policy_file, arrivals, SPRING, crash_at=crash_at, check=False)
        assert crashed.signals == whole.signals
        end = whole.feeds[-1]
        assert crashed.sla_samples(end) == whole.sla_samples(end)


def test_oracle_comparison_can_fail(policy_file):
    arrivals = scenario(1, SPRING)
    dropped = [item for item in arrivals if item[1]["event_type"] != "ticket.agent_replied"][:-1]
    run = SlaRun(policy_file)
    for at, body in arrivals:
        run.feed([body], at)
    now = arrivals[-1][0] + 30
    run.feed([], now)
    timeline = sla_timeline(dropped, run.feeds, yaml.safe_load(POLICY_YAML), LATENESS, QUIET)
    with pytest.raises(AssertionError):
        compare(run.sla_samples(now), sla_expectations(timeline, now, WINDOWS))


# -- the rules, one by one ---------------------------------------------------------------------
FRIDAY_1630 = epoch("2027-03-26T16:30:00+01:00")
MONDAY_AFTER_EASTER = epoch("2027-03-30T09:00:00+02:00")


def test_due_time_skips_night_weekend_dst_and_holiday(policy_file):
    """Urgent at Fri 16:30 (30 min first-response target): 30 min left on Friday, so due
    Friday 17:00; resolution (2 h): 30 min Fri, 4 h Sat -> due Sat 11:30."""
    handler = TicketHandler(policy=load_policy(policy_file))
    run = SlaRun(policy_file, make_processor("tickets", handler))
    run.feed([opened("a", FRIDAY_1630)], FRIDAY_1630)
    sla = handler.tickets["a"].sla
    assert sla is not None
    assert sla.due == [
        epoch("2027-03-26T17:00:00+01:00"),
        epoch("2027-03-27T11:30:00+01:00"),
    ]
    low_saturday = epoch("2027-03-27T13:00:00+01:00")
    run.feed([opened("b", low_saturday, "low")], low_saturday)
    # low: 4 h first response: 1 h Sat, Sun 01:00-04:00 is 2 h real (02:00-03:00 skipped),
    # Sun 22:00-24:00 1 h done -> due Sun 23:00 (CEST)
    assert handler.tickets["b"].sla.due[0] == epoch("2027-03-28T23:00:00+02:00")  # type: ignore[union-attr]


def test_late_arriving_reply_that_happened_in_time_prevents_the_breach(policy_file):
    due = epoch("2027-03-26T17:00:00+01:00")
    run = SlaRun(policy_file).feed([opened("a", FRIDAY_1630)], FRIDAY_1630)
    run.feed([], due + LATENESS - 30)
    run.feed([event("ticket.agent_replied", "a", due - 60)], due + LATENESS - 10)
    run.feed([], due + LATENESS + 600)
    assert [s for _, s in run.signals if s["kind"] == "first_response"] == []
    met = {
        dict(labels)["kind"]: value
        for (name, labels), value in run.sla_samples(due + 700).items()
        if name == "cx_sla_met" and dict(labels)["window"] == "24h"
    }
    assert met == {"first_response": 1}


def test_breach_is_decided_after_lateness_and_signalled_once(policy_file):
    due = epoch("2027-03-26T17:00:00+01:00")
    run = SlaRun(policy_file).feed([opened("a", FRIDAY_1630, customer_id="c-9")], FRIDAY_1630)
    run.feed([], due + LATENESS - 1)
    assert run.signals == []
    run.feed([], due + LATENESS + 1).feed([], due + LATENESS + 60)
    assert len(run.signals) == 1
    key, body = run.signals[0]
    signal = SIGNAL_ADAPTER.validate_python(body)
    assert isinstance(signal, TicketSlaBreached)
    assert (key, signal.kind, signal.priority, signal.customer_id) == (
        "a",
        "first_response",
        "urgent",
        "c-9",
    )
    assert signal.ts == signal.due_at.timestamp() == due
    assert signal.signal_id == signal_id("ticket.sla_breached", "a", "first_response")
    # a reply arriving after the decision changes nothing
    run.feed([event("ticket.agent_replied", "a", due - 60)], due + LATENESS + 120)
    breached = run.sla_samples(due + 200)
    assert not any(name == "cx_sla_met" for name, _ in breached)


@pytest.mark.parametrize(("quiet", "breaches"), [(QUIET, 0), (0.0, 1)])
def test_backfill_reply_moments_after_its_opening_is_judged_with_it(policy_file, quiet, breaches):
    """Both events are old and come in two batches: the breach waits for the quiet period, so
    the reply still counts (without it, the batch boundary would decide a false breach)."""
    handler = TicketHandler(policy=load_policy(policy_file), lateness=LATENESS, quiet=quiet)
    run = SlaRun(policy_file, make_processor("tickets", handler))
    now = FRIDAY_1630 + 5 * 3600
    run.feed([opened("a", FRIDAY_1630)], now)
    run.feed([event("ticket.agent_replied", "a", FRIDAY_1630 + 60)], now + 1)
    run.feed([], now + 60)
    assert len(run.signals) == breaches


def test_resolved_before_first_response_due_without_reply_has_no_observation(policy_file):
    run = SlaRun(policy_file).feed([opened("a", FRIDAY_1630)], FRIDAY_1630)
    resolved = FRIDAY_1630 + 600
    run.feed([event("ticket.resolved", "a", resolved)], resolved)
    samples = run.sla_samples(resolved + 30)
    kinds = {dict(labels)["kind"] for name, labels in samples if name == "cx_sla_met"}
    assert kinds == {"resolution"}
    assert not any(name == "cx_sla_breached" for name, _ in samples)


def test_reopen_does_not_restart_the_resolution_sla(policy_file):
    run = SlaRun(policy_file).feed([opened("a", FRIDAY_1630)], FRIDAY_1630)
    t = FRIDAY_1630 + 300
    run.feed([event("ticket.agent_replied", "a", t), event("ticket.resolved", "a", t)], t)
    run.feed([event("ticket.reopened", "a", t + 60)], t + 60)
    run.feed([], t + 3 * 86_400)
    assert run.signals == []
    assert run.proc.handler.sla.armed() == []  # type: ignore[attr-defined]


def test_at_risk_counts_the_hour_before_due(policy_file):
    due = epoch("2027-03-26T17:00:00+01:00")
    run = SlaRun(policy_file).feed([opened("a", FRIDAY_1630, channel="chat")], FRIDAY_1630)
    at_risk = run.sla_samples(FRIDAY_1630)
    key = ("cx_tickets_at_risk", frozenset({"channel": "chat", "kind": "first_response"}.items()))
    assert at_risk[key] == 1
    run.feed([], due + 1)
    assert key not in run.sla_samples(due + 1)


def test_business_quantiles_only_with_business_hours():
    run = SlaRun(None).feed([opened("a", FRIDAY_1630)], FRIDAY_1630)
    t = FRIDAY_1630 + 600
    run.feed([event("ticket.agent_replied", "a", t), event("ticket.resolved", "a", t)], t)
    names = {name for name, _ in run.sla_samples(t)}
    assert names == {"cx_sla_met", "cx_sla_attainment_ratio"}


def test_state_written_before_slas_restores_without_one():
    old = [1.0, "web", None, False, True, 1.0, []]
    ticket = Ticket.from_wire(old)
    assert ticket.sla is None and ticket.is_open
    handler = TicketHandler()
    handler.restore({"t": {"x": old}})
    assert handler.sla.armed() == []
