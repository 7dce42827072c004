"""The broker every stage of one run shares: embedded Tansu, or one given by ``--bootstrap``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["broker"]


@contextlib.contextmanager
def broker(bootstrap: str | None, log_dir: Path) -> Iterator[tuple[str, int | None]]:
    """(bootstrap, pid of the embedded broker or None for an external one)."""
    if bootstrap:
        yield bootstrap, None
        return
    from pipeline.kafka.broker import EmbeddedBroker

    with EmbeddedBroker(log_path=log_dir / "tansu.log") as embedded:
        yield embedded.bootstrap, embedded.pid
