"""Settings: environment parsing, durations, and the Kafka security options passed through."""

from __future__ import annotations

import ssl

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
