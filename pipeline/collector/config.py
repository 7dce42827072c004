"""The collector's own settings (env ``CX_COLLECTOR_*``), apart from the pipeline's ``Settings``.

Kept separate so the HTTP edge can be configured and validated without touching the worker's
knobs; the Kafka connection still comes from ``pipeline.settings.Settings``.
"""

from __future__ import annotations

import re
from functools import cached_property

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_CURRENCY = re.compile(r"[A-Z]{3}")  # fullmatch: `$` would also match before a "\n"


class CollectorSettings(BaseSettings):
    """HTTP intake configuration. Env var = ``CX_COLLECTOR_`` + field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="CX_COLLECTOR_", frozen=True, extra="ignore")

    host: str = Field("127.0.0.1", description="Bind address (0.0.0.0 in containers).")
    port: int = Field(8088, ge=0, le=65535, description="HTTP port (0 = any free port).")
    tokens: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated secrets accepted as Bearer token or Segment write key.",
    )
    max_body: int = Field(
        1_048_576, ge=1, description="Largest request body in bytes, after gzip decoding (413)."
    )
    max_events: int = Field(1000, ge=1, description="Most events in one request (413).")
    cors_origins: str = Field(
        "", description="Comma-separated browser origins allowed to post (CORS); empty: none."
    )
    rate_limit: float = Field(
        200.0, gt=0, description="Requests per second allowed per token (429 beyond)."
    )
    rate_burst: int = Field(400, ge=1, description="Requests a token may send at once.")
    read_timeout: float = Field(
        10.0, gt=0, description="Seconds a client may take to send its body (408 beyond)."
    )
    idle_timeout: float = Field(
        15.0,
        gt=0,
        description="Seconds an idle or header-dribbling connection is kept before it is closed.",
    )
    produce_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for Kafka's acks before answering 503."
    )
    max_pending_events: int = Field(
        100_000,
        ge=1,
        description="Events awaiting Kafka's acks across requests; beyond it requests get 503.",
    )
    shutdown_timeout: float = Field(
        15.0, ge=0, description="Seconds in-flight requests get to finish on SIGTERM."
    )
    retry_after: int = Field(
        5, ge=1, description="Retry-After seconds sent with a 503 (broker down, buffer full)."
    )
    default_currency: str = Field(
        "USD",
        validation_alias=AliasChoices("CX_DEFAULT_CURRENCY", "default_currency"),
        description="Currency of Segment events without one (env CX_DEFAULT_CURRENCY).",
    )

    @field_validator("tokens")
    @classmethod
    def _at_least_one_token(cls, value: SecretStr) -> SecretStr:
        if not [t for t in value.get_secret_value().split(",") if t.strip()]:
            raise ValueError(
                "CX_COLLECTOR_TOKENS is empty: set at least one token (comma-separated); "
                "the collector accepts no unauthenticated events"
            )
        return value

    @field_validator("default_currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not _CURRENCY.fullmatch(value):
            raise ValueError(
                f"CX_DEFAULT_CURRENCY must be an ISO 4217 code like USD, not {value!r}"
            )
        return value

    @cached_property
    def token_list(self) -> tuple[str, ...]:
        """The accepted secrets, stripped; only the auth check reads them."""
        raw = self.tokens.get_secret_value()
        return tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))

    @cached_property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())
