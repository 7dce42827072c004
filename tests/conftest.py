"""Shared fixtures of the whole test suite. Keep each owner's fixtures in a marked section."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from pipeline.kafka.broker import EmbeddedBroker

# === Embedded broker and unique names (owner: pipeline/kafka/broker.py) ==========================


def make_unique_name(prefix: str) -> str:
    """``prefix-<uuid4 hex>``: topics and groups never collide on the shared session broker."""
    return f"{prefix}-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the whole session (start ~50 ms, but state accumulates in memory).

    Tests share it, so they must use :func:`unique_name` topics/groups. Its log is kept under
    pytest's basetemp for post-mortems.
    """
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("orders")`` -> ``"orders-3f2a..."`` (see :func:`make_unique_name`)."""
    return make_unique_name


# === end of embedded broker section ========================================================
