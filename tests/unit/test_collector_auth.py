"""Credentials (Bearer, Segment's Basic write key) and the collector's settings checks."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

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
    for bad in ("euro", "USD\n"):  # a trailing newline (a secret file) passed Python's `$`
        monkeypatch.setenv("CX_DEFAULT_CURRENCY", bad)
        with pytest.raises(ValidationError, match="CX_DEFAULT_CURRENCY"):
            CollectorSettings()


def run_collector_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.collector"],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


@pytest.mark.parametrize(
    ("env", "named", "code"),
    [
        ({"CX_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "CX_COLLECTOR_TOKENS", 2),
        ({"CX_COLLECTOR_TOKENS": "t"}, "CX_BOOTSTRAP_SERVERS", 2),
        ({"CX_COLLECTOR_TOKENS": "t", "CX_COLLECTOR_PORT": "http"}, "port", 2),
        ({"CX_COLLECTOR_TOKENS": "t", "CX_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "cannot reach", 1),
    ],
)
def test_bad_configuration_stops_the_start_naming_the_problem(
    env: dict[str, str], named: str, code: int
) -> None:
    finished = run_collector_process(env)
    assert finished.returncode == code
    assert named in finished.stderr
    assert "Traceback" not in finished.stderr
