"""Settings: environment parsing, durations, and the Kafka security options passed through."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.settings import Settings, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h", 3600), ("24h", 86400), ("250ms", 0.25), ("42", 42)],
)
def test_durations_parse_and_format(text, seconds):
    assert parse_duration(text) == seconds
    if seconds >= 1 and seconds == int(seconds):
        assert parse_duration(format_duration(seconds)) == seconds


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="duration"):
        Settings(windows="5 minutes")
    with pytest.raises(ValueError, match="at least 10s"):
        Settings(windows="5s,1h")


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("CX_WINDOWS", "1h,15m")
    monkeypatch.setenv("CX_METRICS_HOST", "0.0.0.0")
    settings = Settings()
    assert settings.window_seconds == (900.0, 3600.0)
    assert settings.metrics_host == "0.0.0.0"
    assert settings.effective_dedupe_horizon == 3600 + settings.allowed_lateness


def test_sasl_ssl_options_reach_every_kafka_client():
    settings = Settings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="cx",
        sasl_password="s3cret",
    )
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "cx"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "s3cret" not in repr(settings)  # a logged settings object never shows the secret


def test_metrics_bind_to_loopback_by_default():
    assert Settings().metrics_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CX_MAX_BATCH", "abc"),
        ("CX_LOG_LEVEL", "verbose"),
        ("CX_WINDOWS", "5m,1h,nan"),  # NaN compares false with every bound: it passed them all
        ("CX_CHECKPOINT_RETENTION", "nan"),
        ("CX_DEDUPE_HORIZON", "-5"),  # would forget every id at once: duplicates counted
        ("CX_SESSION_TIMEOUT", "inf"),
        ("CX_APP_ID", ""),
    ],
)
def test_a_bad_setting_stops_the_start_with_one_line_naming_it(variable, value):
    """``cxpipe worker`` (the real CLI, in a subprocess) exits 2 before touching Kafka."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")} | {variable: value}
    result = subprocess.run(
        [sys.executable, "-c", "from pipeline.tools.cli import app; app()", "worker"],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"cxpipe: bad configuration: {variable}: "), result.stderr


def test_durations_must_be_finite():
    for text in ("nan", "inf", "-inf", float("nan")):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(text)
