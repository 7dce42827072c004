"""Credentials (Bearer, Segment's Basic write key) and the collector's settings checks."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from pipeline.collector.auth import token_index
from pipeline.collector.config import CollectorSettings

TOKENS = ("alpha", "beta")


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "index"),
    [
        ("Bearer alpha", 0),
        ("bearer   beta ", 1),
        (basic("beta"), 1),
        (basic("alpha", "x"), None),  # Segment's scheme has no password
        (basic(""), None),
        ("Basic !!notbase64", None),
        ("Bearer gamma", None),
        ("Bearer alph", None),
        ("Bearer ", None),
        ("Token alpha", None),
        ("", None),
        (None, None),
    ],
)
def test_token_index(header: str | None, index: int | None) -> None:
    assert token_index(header, TOKENS) == index


def test_tokens_are_required_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CX_COLLECTOR_TOKENS", raising=False)
    with pytest.raises(ValidationError, match="CX_COLLECTOR_TOKENS is empty"):
        CollectorSettings()
    monkeypatch.setenv("CX_COLLECTOR_TOKENS", " s3cret , other,s3cret,")
    settings = CollectorSettings()
    assert settings.token_list == ("s3cret", "other")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_COLLECTOR_TOKENS", "t")
    monkeypatch.setenv("CX_COLLECTOR_PORT", "9999")
    monkeypatch.setenv("CX_COLLECTOR_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("CX_DEFAULT_CURRENCY", "EUR")
    settings = CollectorSettings()
    assert settings.port == 9999
    assert settings.origins == ("https://a.example", "https://b.example")
    assert settings.default_currency == "EUR"
    monkeypatch.setenv("CX_DEFAULT_CURRENCY", "euro")
    with pytest.raises(ValidationError, match="CX_DEFAULT_CURRENCY"):
        CollectorSettings()
