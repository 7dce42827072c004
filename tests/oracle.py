"""An independent calculation of the contract's metrics, straight from raw event dicts.

Deliberately naive (lists, loops, the contract's formulas verbatim) and sharing no code with
``pipeline``; integration tests compare the worker's /metrics against it.
"""

from __future__ import annotations

from datetime import datetime


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def in_window(t: float, now: float, length: float) -> bool:
    return now - length < t <= now


def first_seen(events: list[dict]) -> list[dict]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        unique.append(event)
    return unique


def survey_expectations(events: list[dict], now: float, windows: dict[str, float]) -> dict:
    """{(metric, frozenset(labels)) : value} for the survey metrics of CONTRACT.md."""
    expected: dict = {}
    surveys = [e for e in first_seen(events) if e["event_type"] == "survey.submitted"]
    surveys = [e for e in surveys if now - epoch(e["occurred_at"]) <= max(windows.values())]
    for window, length in windows.items():
        channels = {e.get("channel", "web") for e in surveys}
        for channel in channels:
            mine = [
                e
                for e in surveys
                if e.get("channel", "web") == channel
                and in_window(epoch(e["occurred_at"]), now, length)
            ]
            base = {"window": window, "channel": channel}
            nps = [e["score"] for e in mine if e["survey"] == "nps"]
            csat = [e["score"] for e in mine if e["survey"] == "csat"]
            ces = [e["score"] for e in mine if e["survey"] == "ces"]
            for survey, scores in (("nps", nps), ("csat", csat), ("ces", ces)):
                if scores:
                    expected[
                        ("cx_survey_responses", frozenset({**base, "survey": survey}.items()))
                    ] = len(scores)
            if nps:
                p = sum(1 for s in nps if s >= 9)
                d = sum(1 for s in nps if s <= 6)
                expected[("cx_nps_score", frozenset(base.items()))] = 100.0 * (p - d) / len(nps)
                for category, n in (
                    ("promoter", p),
                    ("passive", len(nps) - p - d),
                    ("detractor", d),
                ):
                    expected[
                        ("cx_nps_responses", frozenset({**base, "category": category}.items()))
                    ] = n
            if csat:
                expected[("cx_csat_ratio", frozenset(base.items()))] = sum(
                    1 for s in csat if s >= 4
                ) / len(csat)
            if ces:
                expected[("cx_ces_score", frozenset(base.items()))] = sum(ces) / len(ces)
    return expected
