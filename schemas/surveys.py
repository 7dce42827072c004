"""Events of topic `cx.surveys`, keyed by `response_id`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from schemas.envelope import Envelope
from schemas.fields import EntityId, LaxEnum, ShortText, whole_number

TOPIC = "surveys"
KEY = "response_id"


class SurveyKind(StrEnum):
    """Which survey was answered; decides the valid score range."""

    NPS = "nps"
    CSAT = "csat"
    CES = "ces"


SCORE_RANGES: dict[SurveyKind, tuple[int, int]] = {
    SurveyKind.NPS: (0, 10),
    SurveyKind.CSAT: (1, 5),
    SurveyKind.CES: (1, 7),
}


SurveyKindField = Annotated[SurveyKind, LaxEnum]
Score = whole_number(0, 10, "Integer score: nps 0-10, csat 1-5, ces 1-7.")


def _score_range_schema(schema: dict[str, Any]) -> None:
    """Spell the per-kind score ranges in JSON Schema too, so producers can check them."""
    schema["allOf"] = [
        {
            "if": {"properties": {"survey": {"const": kind.value}}, "required": ["survey"]},
            "then": {"properties": {"score": {"minimum": low, "maximum": high}}},
        }
        for kind, (low, high) in SCORE_RANGES.items()
    ]


class SurveySubmitted(Envelope):
    """A survey response (NPS, CSAT or CES)."""

    model_config = ConfigDict(json_schema_extra=_score_range_schema)

    event_type: Literal["survey.submitted"]
    response_id: Annotated[
        EntityId, Field(description="Response id; the record key of cx.surveys.")
    ]
    survey: Annotated[SurveyKindField, Field(description="nps, csat or ces.")]
    score: Score
    touchpoint: Annotated[
        ShortText | None,
        Field(description="Where the survey was shown, e.g. checkout, delivery, support."),
    ] = None
    comment: Annotated[
        str | None, Field(max_length=10_000, description="Free text; never a metric label.")
    ] = None

    @field_validator("score")
    @classmethod
    def _score_in_kind_range(cls, score: int, info: ValidationInfo) -> int:
        # A field validator (not a model one) so the error points at `score`; `survey` is
        # declared first, so it is in info.data whenever it was valid.
        kind = info.data.get("survey")
        if kind is not None:
            low, high = SCORE_RANGES[kind]
            if not low <= score <= high:
                raise PydanticCustomError(
                    "score_out_of_range",
                    "outside the range of its survey kind (nps 0-10, csat 1-5, ces 1-7)",
                )
        return score


MODELS = (SurveySubmitted,)
