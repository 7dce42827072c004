"""Every knob of cx-pipeline, read once from the environment (prefix ``CX_``) or the CLI.

The README's configuration table is generated from this model (``tests`` keep it in sync), so a
setting that is not here does not exist.
"""

from __future__ import annotations

import math
import re
from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_duration(text: str | float | int) -> float:
    """``"5m"`` -> 300.0 seconds; plain numbers are seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    elif (match := _DURATION.match(text)) is not None:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r} (use e.g. 10s, 5m, 1h, 24h)")
    return seconds


def format_duration(seconds: float) -> str:
    """300 -> ``"5m"``; the inverse of :func:`parse_duration` for whole units."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Settings(BaseSettings):
    """cx-pipeline configuration. Env var = ``CX_`` + field name in capitals."""

    # allow_inf_nan=False: "nan" compares false with every bound, so it slipped past them all
    model_config = SettingsConfigDict(
        env_prefix="CX_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    # --- Kafka connection -------------------------------------------------------------
    bootstrap_servers: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...). Unset: start the embedded Tansu broker.",
    )
    topic_prefix: str = Field("cx.", description="Prefix of every topic name.")
    app_id: str = Field(
        "cx-pipeline",
        min_length=1,
        description="Consumer group and internal-topic namespace; one per pipeline deployment.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when security_protocol is SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL username.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    ssl_cafile: str | None = Field(None, description="CA bundle for SSL/SASL_SSL.")
    ssl_certfile: str | None = Field(None, description="Client certificate for mutual TLS.")
    ssl_keyfile: str | None = Field(None, description="Client key for mutual TLS.")
    session_timeout: float = Field(
        6.0,
        gt=0,
        description="Consumer-group session timeout (s); a crashed worker's partitions move after "
        "it. 6 is Kafka's minimum; with the embedded broker the default is 2 (a join then takes 1 s).",
    )
    source_partitions: int = Field(
        8, ge=1, description="Partitions of source topics the pipeline creates when missing."
    )
    replication_factor: int = Field(1, ge=1, description="Replication of created topics.")

    # --- Windows and event time ---------------------------------------------------------
    windows: str = Field("5m,1h,24h", description="Rolling event-time windows, comma separated.")
    abandonment_timeout: float = Field(
        1800.0, gt=0, description="Cart idle time before abandonment (s)."
    )
    allowed_lateness: float = Field(
        120.0,
        ge=0,
        description="How long a decision taken when time passes (a cart outcome, an SLA breach) "
        "waits for late events (s).",
    )
    quiet_period: float = Field(
        5.0, ge=0, description="No-event period of a cart or ticket before such a decision (s)."
    )
    sla_policy: str | None = Field(
        None,
        description="SLA policy file (YAML: timezone, business hours, holidays, targets per "
        "priority); checked at start, `cxpipe sla check FILE` checks one. Unset: the contract's "
        "default targets in calendar time.",
    )
    entity_retention: float = Field(
        30 * 86_400.0,
        gt=0,
        description="How long a finished ticket or an order is remembered after its last event, "
        "for reopens, refunds and deliveries (s). Bounds memory: about 350 bytes each.",
    )
    max_future_skew: float = Field(
        300.0, ge=0, description="Reject events this far in the future (s)."
    )
    dedupe_horizon: float | None = Field(
        None,
        gt=0,
        description="How long event ids are remembered (s). Default: longest window + lateness.",
    )

    # --- Input limits -------------------------------------------------------------------
    max_record_bytes: int = Field(
        262_144, ge=1, description="Larger records are dead-lettered unparsed."
    )
    max_json_depth: int = Field(64, ge=1, description="Deeper JSON is dead-lettered.")

    # --- Processing -----------------------------------------------------------------------
    flush_interval: float = Field(
        0.5,
        gt=0,
        description="Checkpoint cadence (s) under a backlog: latency of metrics vs records "
        "written. A worker that has read everything checkpoints after a fifth of it.",
    )
    max_batch: int = Field(5000, ge=1, description="Records fetched per poll.")
    snapshot_interval: float = Field(
        600.0,
        gt=0,
        description="How often each partition checkpoints its full state and the view is "
        "snapshotted (s): start-up and recovery read only what came after.",
    )
    checkpoint_retention: float = Field(
        7 * 86_400.0,
        gt=0,
        description="Retention of the checkpoint log when the pipeline creates it (s); must exceed "
        "the dedupe horizon plus two snapshot intervals.",
    )

    # --- Exposition -----------------------------------------------------------------------
    metrics_host: str = Field(
        "127.0.0.1", description="Bind address of /metrics (0.0.0.0 in containers)."
    )
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of /metrics (0 = any free port)."
    )
    log_level: str = Field(
        "INFO", description="Python log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; use one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, value: str) -> str:
        sizes = [parse_duration(part) for part in value.split(",") if part.strip()]
        if not sizes:
            raise ValueError("at least one window is required")
        if any(size < 10 for size in sizes):
            raise ValueError("windows must be at least 10s")
        return value

    @cached_property
    def window_seconds(self) -> tuple[float, ...]:
        """Window lengths in seconds, shortest first."""
        return tuple(sorted({parse_duration(p) for p in self.windows.split(",") if p.strip()}))

    @property
    def longest_window(self) -> float:
        return self.window_seconds[-1]

    @property
    def effective_dedupe_horizon(self) -> float:
        if self.dedupe_horizon is not None:
            return self.dedupe_horizon
        return self.longest_window + self.allowed_lateness

    @property
    def recovery_horizon(self) -> float:
        """How far back a partition's recovery must read checkpoints to get every live event id.

        An id of event time ``t`` rides in a checkpoint written at ``>= t - max_future_skew``.
        """
        return self.effective_dedupe_horizon + self.max_future_skew + 60.0

    @model_validator(mode="after")
    def _retention_covers_recovery(self) -> Settings:
        needed = self.recovery_horizon + 2 * self.snapshot_interval
        if self.checkpoint_retention < needed:
            raise ValueError(
                f"checkpoint_retention {self.checkpoint_retention:g}s is shorter than the "
                f"{needed:g}s recovery needs (dedupe horizon + skew + 2 snapshot intervals)"
            )
        return self

    def topic(self, name: str) -> str:
        """``topic("carts")`` -> ``"cx.carts"``."""
        return f"{self.topic_prefix}{name}"

    def internal_topic(self, name: str) -> str:
        """Topics the pipeline owns: ``cx-pipeline.checkpoints`` etc."""
        return f"{self.app_id}.{name}"

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client, security included."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return options


def configuration_table() -> str:
    """The README's configuration table, generated so docs and code cannot drift."""
    rows = ["| env var | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "*(unset)*" if default is None else f"`{default}`"
        rows.append(f"| `CX_{name.upper()}` | {shown} | {info.description} |")
    return "\n".join(rows)
