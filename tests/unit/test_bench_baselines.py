"""The benchmark's baselines compute what they claim, and the comparison divides what it says.

* The Quix Streams survey slice folds responses into the same ingredients our SurveyHandler
  observes (oracle: the handler itself, over the same responses).
* ``bench.run.comparison`` reports, per baseline present, our events/s over theirs.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.run import BASELINES, comparison
from bench.stages.quix_survey import EMPTY, add_response
from pipeline.aggregates.observations import Observations
from pipeline.domain.surveys import SurveyHandler
from schemas import SurveySubmitted

RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
responses = st.lists(
    st.sampled_from(sorted(RANGES)).flatmap(
        lambda kind: st.integers(*RANGES[kind]).map(lambda score: (kind, score))
    ),
    max_size=60,
)


def handler_ingredients(answers: list[tuple[str, int]]) -> Counter[str]:
    """What SurveyHandler observes for ``answers`` (one channel), summed over time buckets."""
    out = Observations()
    out.now = 2e9
    handler = SurveyHandler()
    for index, (kind, score) in enumerate(answers):
        event = SurveySubmitted.model_validate(
            {
                "event_id": f"e-{index}",
                "event_type": "survey.submitted",
                "occurred_at": "2026-01-01T00:00:00Z",
                "schema_version": 1,
                "source": "bench-test",
                "channel": "web",
                "response_id": f"r-{index}",
                "survey": kind,
                "score": score,
            }
        )
        handler.handle(event, out)
    totals: Counter[str] = Counter()
    for ((name, labels), _bucket), value in out.delta.windowed.items():
        key = f"responses_{labels[1]}" if name == "survey_responses" else name
        if name == "nps":
            key = f"nps_{labels[1]}"
        totals[key] += int(value)
    return totals


@settings(max_examples=100, deadline=None)
@given(answers=responses)
def test_quix_slice_folds_the_ingredients_our_handler_observes(
    answers: list[tuple[str, int]],
) -> None:
    folded = dict(EMPTY)
    for kind, score in answers:
        folded = add_response(folded, {"survey": kind, "score": score})
    assert {k: v for k, v in folded.items() if v} == dict(+handler_ingredients(answers))


def test_comparison_divides_our_rate_by_each_present_baseline() -> None:
    results = {
        "pipeline": {"events_per_s": 50_000.0, "worker_cpu_us_per_event": 20.0},
        "raw_consume": {"events_per_s": 200_000.0, "cpu_us_per_event": 4.0},
        "faust_tuned": {"events_per_s": 12_500.0, "cpu_us_per_event": 70.0},
    }
    rows = comparison(results)
    assert [row["baseline"] for row in rows] == ["raw_consume", "faust_tuned"]
    assert rows[0]["worker_vs_baseline"] == pytest.approx(0.25)
    assert rows[1]["worker_vs_baseline"] == pytest.approx(4.0)
    assert rows[1]["cpu_us_per_event"] == 70.0
    assert all(row["worker_cpu_us_per_event"] == 20.0 for row in rows)
    assert {key for key, _ in BASELINES} >= {"raw_consume", "faust_tuned", "quix", "naive"}
