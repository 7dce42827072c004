"""Survey responses -> the NPS, CSAT and CES ingredients (CONTRACT.md "Metric definitions").

Only counts and sums are stored; scores are computed at exposition from the window's totals, so
windows merge exactly and a ratio is never averaged. A detractor (NPS 0-6, CSAT 1-2) is also a
``survey.detractor`` signal at the response's time: a follow-up is due whatever the window.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from pipeline.aggregates.observations import Observations
from pipeline.domain.handler import Stateless
from pipeline.domain.reading import MetricView, WindowReader, gauge
from pipeline.domain.signalling import emit_signal
from schemas import SurveySubmitted

NPS_CATEGORIES = ("promoter", "passive", "detractor")
CSAT_DETRACTOR_MAX = 2
"""CSAT scores 1-2 call for a follow-up (CONTRACT.md "Signals")."""


def nps_category(score: int) -> str:
    """Promoters score 9–10, passives 7–8, detractors 0–6."""
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def is_detractor(survey: str, score: int) -> bool:
    """NPS 0-6 or CSAT 1-2: a response that calls for a follow-up."""
    if survey == "nps":
        return nps_category(score) == "detractor"
    return survey == "csat" and score <= CSAT_DETRACTOR_MAX


class SurveyHandler(Stateless):
    def handle(self, event: SurveySubmitted, out: Observations) -> None:
        channel = str(event.channel)
        survey = str(event.survey)
        time = event.ts
        out.observe("survey_responses", (channel, survey), time)
        score = event.score
        if survey == "nps":
            out.observe("nps", (channel, nps_category(score)), time)
        elif survey == "csat":
            if score >= 4:
                out.observe("csat_satisfied", (channel,), time)
        else:
            out.observe("ces_sum", (channel,), time, score)
        self._follow_up(event, out)

    def handle_late(self, event: SurveySubmitted, out: Observations) -> None:
        """A detractor's follow-up is due whatever its age, and a response is decided alone:
        a backfilled one is signalled like a live one (same ``signal_id``)."""
        self._follow_up(event, out)

    @staticmethod
    def _follow_up(event: SurveySubmitted, out: Observations) -> None:
        if not is_detractor(str(event.survey), event.score):
            return
        emit_signal(
            out,
            "survey.detractor",
            event.response_id,
            occurred_at=event.ts,
            channel=str(event.channel),
            customer_id=event.customer_id,
            survey=str(event.survey),
            score=event.score,
            touchpoint=event.touchpoint,
        )


def metrics(view: MetricView, now: float) -> Iterator[Metric]:
    nps_score = gauge("cx_nps_score", "Net Promoter Score, -100..100, over the window.")
    nps_responses = gauge("cx_nps_responses", "NPS responses in the window.", "category")
    csat = gauge("cx_csat_ratio", "Share of CSAT responses scoring 4 or 5, 0..1.")
    ces = gauge("cx_ces_score", "Mean Customer Effort Score (1-7).")
    responses = gauge("cx_survey_responses", "Survey responses in the window.", "survey")
    channels = sorted({labels[0] for labels in view.labels_of("survey_responses")})
    for spec in view.specs:
        read = WindowReader(view, spec, now)
        for channel in channels:
            base = [spec.name, channel]
            counts = {c: read.count("nps", (channel, c)) for c in NPS_CATEGORIES}
            if any(v is not None for v in counts.values()):
                total = sum(v or 0.0 for v in counts.values())
                for category, value in counts.items():
                    nps_responses.add_metric([*base, category], value or 0.0)
                if total:
                    promoters = counts["promoter"] or 0.0
                    detractors = counts["detractor"] or 0.0
                    nps_score.add_metric(base, 100.0 * (promoters - detractors) / total)
            for survey in ("nps", "csat", "ces"):
                n = read.count("survey_responses", (channel, survey))
                if n is None:
                    continue
                responses.add_metric([*base, survey], n)
                if not n:
                    continue
                if survey == "csat":
                    csat.add_metric(base, (read.count("csat_satisfied", (channel,)) or 0.0) / n)
                elif survey == "ces":
                    ces.add_metric(base, (read.count("ces_sum", (channel,)) or 0.0) / n)
    yield from (nps_score, nps_responses, csat, ces, responses)
