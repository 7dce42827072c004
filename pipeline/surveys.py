"""Survey responses -> the NPS, CSAT and CES ingredients (CONTRACT.md "Metric definitions").

Only counts and sums are stored; scores are computed at exposition from the window's totals, so
windows merge exactly and a ratio is never averaged.
"""

from __future__ import annotations

from pipeline.domain import Stateless
from pipeline.observations import Observations
from schemas import SurveySubmitted


def nps_category(score: int) -> str:
    """Promoters score 9–10, passives 7–8, detractors 0–6."""
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


class SurveyHandler(Stateless):
    def handle(self, event: SurveySubmitted, out: Observations) -> None:
        channel = str(event.channel)
        survey = str(event.survey)
        time = event.ts
        out.observe("survey_responses", (channel, survey), time)
        if survey == "nps":
            out.observe("nps", (channel, nps_category(event.score)), time)
        elif survey == "csat":
            if event.score >= 4:
                out.observe("csat_satisfied", (channel,), time)
        else:
            out.observe("ces_sum", (channel,), time, event.score)
