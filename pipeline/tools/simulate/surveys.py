"""Survey responses whose scores follow the experience they rate.

A response draws a latent satisfaction z ~ N(shift, 1) and reads off the score at z's quantile of
a neutral experience's score distribution, so a good or bad experience (positive or negative
``shift``: a late delivery, a slow ticket) moves the whole distribution, as it does in real shops.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from statistics import NormalDist

from pipeline.tools.simulate.core import Timeline, cumulative

_SURVEY_KINDS = ("nps", "csat", "ces")
_SURVEY_KIND_WEIGHTS = (0.50, 0.30, 0.20)
# Score distributions of a neutral experience, worst score first.
_SCORE_DISTRIBUTIONS: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "nps": (
        tuple(range(11)),
        (0.015, 0.01, 0.015, 0.02, 0.02, 0.05, 0.08, 0.12, 0.18, 0.20, 0.29),
    ),
    "csat": ((1, 2, 3, 4, 5), (0.05, 0.06, 0.10, 0.33, 0.46)),
    "ces": ((7, 6, 5, 4, 3, 2, 1), (0.03, 0.04, 0.07, 0.11, 0.18, 0.27, 0.30)),  # 1 = effortless
}
_P_COMMENT = 0.08
_COMMENTS = (
    ("Very disappointed.", "Took far too long.", "Nobody helped me.", "Never again."),
    ("OK.", "Fine, nothing special.", "Could be faster.", "As expected."),
    ("Great service!", "Super fast, thanks.", "Very helpful agent.", "Love it."),
)

SurveyRequest = tuple[str, str, str, float]
"""(channel, customer, touchpoint, shift): who is asked about what, and how it went."""


def _score_thresholds(probabilities: Sequence[float]) -> list[float]:
    """Latent-z cut points so that z ~ N(0, 1) yields the given score distribution."""
    return [NormalDist().inv_cdf(c) for c in cumulative(probabilities)[:-1]]


_THRESHOLDS = {kind: _score_thresholds(dist[1]) for kind, dist in _SCORE_DISTRIBUTIONS.items()}


class SurveyStories:
    """Emits ``survey.submitted`` responses; other stories schedule :meth:`respond`."""

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline
        self._rng = timeline.rng
        self._kind_cum = cumulative(_SURVEY_KIND_WEIGHTS)

    def respond(self, t: int, request: SurveyRequest) -> None:
        """A response whose latent satisfaction is N(shift, 1); see the module docstring."""
        channel, customer, touchpoint, shift = request
        rng = self._rng
        kind = _SURVEY_KINDS[bisect_right(self._kind_cum, rng.random())]
        z = rng.gauss(shift, 1.0)
        score = _SCORE_DISTRIBUTIONS[kind][0][bisect_right(_THRESHOLDS[kind], z)]
        response_id = self._timeline.new_id("rsp_")
        value = self._timeline.event(
            t, "surveys", response_id, "survey.submitted", "survey-tool", channel, customer
        )
        value["survey"] = kind
        value["score"] = score
        value["touchpoint"] = touchpoint
        if rng.random() < _P_COMMENT:
            mood = 0 if z < -0.8 else 2 if z > 0.5 else 1
            value["comment"] = rng.choice(_COMMENTS[mood])
