"""`cxpipe act`'s pure parts: the actions file, signatures, backoff, the delivery decision, and
the signal schema they rely on."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.act.config import ActionsError, DeliveryPolicy, Webhook, load_actions
from pipeline.act.delivery import backoff_delay
from pipeline.act.policy import Decision, decide
from pipeline.act.signing import SignatureError, sign, verify
from schemas.envelope import Channel
from schemas.export import json_schemas
from schemas.signals import SIGNAL_ADAPTER, SIGNAL_TYPES, signal_id

SECRET = "s3cret-s3cret-s3cret"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# --- signal schema --------------------------------------------------------------------------


def detractor(**changes: Any) -> dict[str, Any]:
    value = {
        "signal_id": signal_id("survey.detractor", "r-1"),
        "signal_type": "survey.detractor",
        "occurred_at": "2026-11-23T11:59:00Z",
        "channel": "web",
        "customer_id": "c-1",
        "schema_version": 1,
        "response_id": "r-1",
        "survey": "nps",
        "score": 4,
    }
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ...}


def test_valid_signal_parses_and_knows_its_key() -> None:
    signal = SIGNAL_ADAPTER.validate_python(detractor(extra_field="ignored"))
    assert signal.entity_id == "r-1"
    assert signal.ts == datetime(2026, 11, 23, 11, 59, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "changes",
    [
        {"score": 7},  # a passive is no detractor
        {"survey": "csat", "score": 3},
        {"survey": "ces"},
        {"signal_type": "cart.exploded"},
        {"schema_version": 2},
        {"occurred_at": "2026-11-23T11:59:00"},  # no offset
        {"channel": ...},
        {"signal_id": ""},
        {"score": "4"},  # strict: no coercion
    ],
)
def test_invalid_signals_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SIGNAL_ADAPTER.validate_python(detractor(**changes))


def test_abandoned_cart_with_items() -> None:
    signal = SIGNAL_ADAPTER.validate_python(
        {
            "signal_id": signal_id("cart.abandoned", "k-1"),
            "signal_type": "cart.abandoned",
            "occurred_at": "2026-11-23T11:00:00+01:00",
            "channel": "mobile_app",
            "schema_version": 1,
            "cart_id": "k-1",
            "last_step": "none",
            "items": [{"product_id": "p", "quantity": 1, "unit_price": 2.5, "currency": "EUR"}],
            "value": "2.5",
            "currency": "EUR",
        }
    )
    assert signal.entity_id == "k-1" and signal.customer_id is None


@given(st.sampled_from(SIGNAL_TYPES), st.text(min_size=1), st.lists(st.text(), max_size=3))
def test_signal_id_is_stable_and_tells_facts_apart(
    signal_type: str, entity: str, fact: list[str]
) -> None:
    first = signal_id(signal_type, entity, *fact)
    assert first == signal_id(signal_type, entity, *fact)
    assert len(first) <= 128
    assert first != signal_id(signal_type, entity + "x", *fact)
    assert first != signal_id(signal_type, entity, *fact, "other-kind")


def test_signal_id_separates_its_parts() -> None:
    assert signal_id("cart.abandoned", "ab", "c") != signal_id("cart.abandoned", "a", "bc")
    with pytest.raises(ValueError, match="unknown signal_type"):
        signal_id("cart.lost", "a")


def test_signals_json_schema_lists_the_five_types() -> None:
    schema = orjson.loads(json_schemas()["signals.json"])
    assert schema["discriminator"]["propertyName"] == "signal_type"
    assert sorted(schema["discriminator"]["mapping"]) == sorted(SIGNAL_TYPES)


# --- signing --------------------------------------------------------------------------------


def test_signature_matches_an_independent_hmac() -> None:
    body = b'{"signal_id":"sig-1"}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(SECRET, body, header, now=1_700_000_010) == 1_700_000_000


@pytest.mark.parametrize(
    ("secret", "body", "now", "message"),
    [
        ("other-secret-value", b"{}", 1_700_000_000, "does not match"),
        (SECRET, b"{ }", 1_700_000_000, "does not match"),  # body changed
        (SECRET, b"{}", 1_700_000_301, "replay"),  # too old
        (SECRET, b"{}", 1_699_999_699, "replay"),  # from the future
    ],
)
def test_verify_rejects(secret: str, body: bytes, now: float, message: str) -> None:
    header = sign(SECRET, b"{}", timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match=message):
        verify(secret, body, header, now=now)


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=x,v1=abc", "t=1,t=2,v1=abc"])
def test_verify_rejects_malformed_headers(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, b"{}", header, now=1)


# --- backoff --------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=40),
    st.floats(min_value=0.01, max_value=10),
    st.floats(min_value=0.01, max_value=600),
    st.floats(min_value=0, max_value=1),
)
def test_backoff_is_exponential_capped_and_jittered(
    retry: int, base: float, cap: float, jitter: float
) -> None:
    policy = DeliveryPolicy(backoff=base, backoff_max=cap)
    ceiling = min(cap, base * 2**retry)
    delay = backoff_delay(retry, policy, rand=lambda: jitter)
    assert ceiling / 2 <= delay <= ceiling * (1 + 1e-9)


def test_backoff_doubles_until_the_cap() -> None:
    policy = DeliveryPolicy(backoff=1, backoff_max=10)
    top = [backoff_delay(n, policy, rand=lambda: 1.0) for n in range(6)]
    assert top == [1, 2, 4, 8, 10, 10]


# --- decision -------------------------------------------------------------------------------

HOOK = Webhook(name="h", url="http://x/y", secret=SECRET, channels=["web", "email"])


def parsed(seconds_ago: float = 60, **changes: Any) -> Any:
    occurred = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return SIGNAL_ADAPTER.validate_python(detractor(occurred_at=occurred, **changes))


def run(signal: Any, *, cap: float | None = 86400, done: Any = None, held: Any = None) -> Decision:
    return decide(
        signal,
        HOOK,
        now=NOW.timestamp(),
        frequency_cap=cap,
        dedupe_horizon=3600,
        done=done,
        cap=held,
    )


def test_decisions() -> None:
    now = NOW.timestamp()
    fresh = parsed()
    assert run(fresh) is Decision.DELIVER
    assert run(fresh, done={"at": now - 10}) is Decision.DUPLICATE
    assert run(fresh, done={"at": now - 7200}) is Decision.DELIVER  # beyond the horizon
    assert run(parsed(channel="store")) is Decision.CHANNEL
    assert run(parsed(seconds_ago=3601)) is Decision.STALE
    assert run(parsed(seconds_ago=3599)) is Decision.DELIVER
    other = {"at": now - 100, "signal_id": "sig-other"}
    assert run(fresh, held=other) is Decision.CAPPED
    assert run(fresh, held=other, cap=None) is Decision.DELIVER  # no cap configured
    assert run(fresh, held={**other, "at": now - 86401}) is Decision.DELIVER  # cap expired
    # the claim of this very signal (a restart between claim and delivery) does not cap it
    assert run(fresh, held={"at": now - 100, "signal_id": fresh.signal_id}) is Decision.DELIVER


# --- actions file ---------------------------------------------------------------------------

GOOD = """\
delivery: {attempts: 3, backoff: 500ms}
signals:
  cart.abandoned:
    frequency_cap: 24h
    webhooks:
      - name: reminders
        url: https://crm.example/hooks/cart
        secret_env: CX_TEST_HOOK_SECRET
        channels: [web, mobile_app]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "actions.yml"
    path.write_text(text)
    return path


def test_good_actions_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_TEST_HOOK_SECRET", SECRET)
    actions = load_actions(write(tmp_path, GOOD))
    (hook,) = actions.webhooks()
    assert hook.secret == SECRET and hook.max_age == 3600
    assert hook.channels == {Channel.WEB, Channel.MOBILE_APP}
    assert actions.signals["cart.abandoned"].frequency_cap == 86400
    assert actions.delivery.attempts == 3 and actions.delivery.backoff == 0.5
    assert SECRET not in repr(actions)


@pytest.mark.parametrize(
    ("old", "new", "line", "key"),
    [
        ("frequency_cap: 24h", "frequency_cap: soon", 4, "signals.cart.abandoned.frequency_cap"),
        ("cart.abandoned:", "cart.exploded:", 3, "signals.cart.exploded"),
        ("channels: [web, mobile_app]", "channels: [web, fax]", 9, "channels.1"),
        ("url: https://", "url: ftp://", 7, "webhooks.0.url"),
        ("attempts: 3", "attempts: 0", 1, "delivery.attempts"),
        ("        channels", "        chanels", 9, "webhooks.0.chanels"),
        ("secret_env: CX_TEST_HOOK_SECRET", "secret_env: CX_TEST_UNSET", 6, "webhooks.0"),
    ],
)
def test_bad_actions_file_names_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, line: int, key: str
) -> None:
    monkeypatch.setenv("CX_TEST_HOOK_SECRET", SECRET)
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ActionsError) as info:
        load_actions(path)
    message = str(info.value)
    assert f"{path}:line {line}:" in message, message
    assert key in message, message


def test_duplicate_webhook_names_and_short_secret(tmp_path: Path) -> None:
    text = """\
signals:
  survey.detractor:
    webhooks: [{name: a, url: "http://x", secret: short}]
  cart.recovered:
    webhooks: [{name: a, url: "http://y", secret: "long-enough-secret-1"}]
"""
    with pytest.raises(ActionsError) as info:
        load_actions(write(tmp_path, text))
    assert "line 3" in str(info.value) and "secret" in str(info.value)
    fixed = text.replace("secret: short", 'secret: "long-enough-secret-2"')
    with pytest.raises(ActionsError, match="webhook names must be unique: a"):
        load_actions(write(tmp_path, fixed))


@pytest.mark.parametrize("text", ["signals: [", "- just a list", ""])
def test_unusable_files(tmp_path: Path, text: str) -> None:
    with pytest.raises(ActionsError, match=str(tmp_path)):
        load_actions(write(tmp_path, text))
    with pytest.raises(ActionsError, match="cannot read"):
        load_actions(tmp_path / "missing.yml")


# --- deploy examples ------------------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "act"


def test_example_actions_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CX_ACT_RECEIVER_SECRET", SECRET)
    actions = load_actions(DEPLOY / "example-actions.yml")
    assert {signal_type for signal_type, _, _ in actions.targets()} <= set(SIGNAL_TYPES)


def test_example_receiver_accepts_act_signatures_only() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("example_receiver", DEPLOY / "receiver.py")
    assert spec is not None and spec.loader is not None
    receiver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(receiver)
    receiver.SECRET = SECRET
    body = b'{"signal_id": "sig-1"}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    assert receiver.verified(header, body, 1_700_000_100)
    assert not receiver.verified(header, body + b" ", 1_700_000_100)
    assert not receiver.verified(header, body, 1_700_000_400)  # replayed too late
    assert not receiver.verified(
        sign("another-secret-123", body, 1_700_000_000), body, 1_700_000_000
    )
