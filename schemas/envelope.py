"""The envelope every event carries, and the channel enum."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.fields import LaxEnum, SchemaVersion, Timestamp


class Channel(StrEnum):
    """Where the customer interacted; the `channel` label of every CX metric."""

    WEB = "web"
    MOBILE_APP = "mobile_app"
    STORE = "store"
    MARKETPLACE = "marketplace"
    CALL_CENTER = "call_center"
    CHAT = "chat"
    EMAIL = "email"
    SOCIAL = "social"


ChannelField = Annotated[Channel, LaxEnum]


class Envelope(BaseModel):
    """Fields common to every event (schema_version 1)."""

    # strict: no coercion; frozen: events are facts; ignore: producers may be newer than us.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description="Unique per event; a repeated id is a duplicate and changes nothing.",
        ),
    ]
    event_type: str
    occurred_at: Annotated[
        Timestamp,
        Field(description="Event time, RFC 3339 with an offset; all windows use it."),
    ]
    schema_version: Annotated[SchemaVersion, Field(description="1 for this contract.")]
    source: Annotated[str, Field(min_length=1, max_length=128, description="The emitting service.")]
    channel: Annotated[ChannelField, Field(description="Interaction channel; defaults to web.")] = (
        Channel.WEB
    )
    customer_id: Annotated[
        str | None,
        Field(max_length=256, description="Opaque customer id; never used as a metric label."),
    ] = None

    @property
    def ts(self) -> float:
        """`occurred_at` as epoch seconds, the unit the window buckets work in.

        Read ~3 times per event on the hot path; ``datetime.timestamp()`` costs ~0.4 µs, so the
        first read keeps it in the instance dict (where ``cached_property`` kept it: non-field
        keys are ignored by ``==`` and serialisation), without 3.11's ``cached_property`` lock.
        """
        cached = self.__dict__.get("ts")
        if cached is None:
            cached = self.__dict__["ts"] = self.occurred_at.timestamp()
        return cached
