"""Cost of SLA tracking: the timer structure with 100k open tickets, and memory per ticket.

    .venv/bin/python -m bench.sla [--tickets 100000]

Measures (one process, no Kafka): arming 100k timers; one scrape-time at-risk read (what a
scan per scrape would have cost is shown for comparison); moving the clock over a busy hour
(entries, exits, breaches); disarming on replies; and the memory of an open ticket in the
handler (tracemalloc, with and without a business-hours policy).
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from pathlib import Path

from pipeline.aggregates.observations import Observations
from pipeline.domain.sla_policy import load_policy
from pipeline.domain.sla_timers import AT_RISK_HORIZON, SlaTimers
from pipeline.domain.tickets import TicketHandler
from schemas import TicketOpened

START = 1_800_000_000.0
POLICY = """\
timezone: Europe/Berlin
business_hours:
  mon: ["09:00-12:00", "13:00-17:00"]
  tue: ["09:00-12:00", "13:00-17:00"]
  wed: ["09:00-12:00", "13:00-17:00"]
  thu: ["09:00-12:00", "13:00-17:00"]
  fri: ["09:00-12:00", "13:00-17:00"]
targets:
  first_response: {urgent: 900, high: 3600, normal: 14400, low: 28800}
  resolution: {urgent: 14400, high: 28800, normal: 86400, low: 259200}
"""


def timed(label: str, action, *args):
    began = time.perf_counter()
    result = action(*args)
    print(f"{label:<52} {1000 * (time.perf_counter() - began):9.1f} ms")
    return result


def timers_cost(n: int) -> None:
    rng = random.Random(1)
    timers = SlaTimers(lateness=120.0)
    dues = [START + rng.uniform(0, 3 * 86_400) for _ in range(n)]

    def arm_all() -> None:
        for i, due in enumerate(dues):
            timers.arm(f"t{i}", "first_response" if i % 2 else "resolution", "web", due)

    timed(f"arm {n} timers", arm_all)
    timers.advance(START)
    timed("at-risk read at a scrape (timers)", timers.at_risk, START + 1)
    timed(
        "the same by a scan of every due time",
        lambda: sum(1 for due in dues if due - AT_RISK_HORIZON <= START + 1 <= due),
    )
    steps = [START + 60 * k for k in range(1, 61)]
    breaches = timed(
        "advance the clock 1 h in 60 ticks", lambda: sum(len(timers.advance(t)) for t in steps)
    )
    print(f"{'  breaches decided in that hour':<52} {breaches:9d}")
    victims = rng.sample(range(n), n // 2)
    timed(
        f"disarm {n // 2} (replies/resolutions)",
        lambda: [
            timers.disarm(f"t{i}", "first_response" if i % 2 else "resolution") for i in victims
        ],
    )


def per_ticket_memory(n: int, policy_path: Path | None) -> float:
    policy = load_policy(policy_path)
    events = [
        TicketOpened.model_validate(
            {
                "event_id": f"e{i}",
                "event_type": "ticket.opened",
                "occurred_at": "2027-01-15T10:00:00+00:00",
                "schema_version": 1,
                "source": "bench",
                "channel": "chat",
                "ticket_id": f"tkt_{i:08d}",
                "priority": ("low", "normal", "high", "urgent")[i % 4],
                "customer_id": f"cus_{i:08d}",
            }
        )
        for i in range(n)
    ]
    out = Observations()
    out.now = START
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    handler = TicketHandler(policy=policy)
    for event in events:
        handler.handle(event, out)
    handler.tick(START, out)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    args = parser.parse_args(argv)
    timers_cost(args.tickets)
    policy = Path("/tmp/cx-bench-sla-policy.yml")
    policy.write_text(POLICY)
    for label, path in (("calendar time (default policy)", None), ("business hours", policy)):
        size = per_ticket_memory(min(args.tickets, 50_000), path)
        print(f"{'memory per open ticket, ' + label:<52} {size:9.0f} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
