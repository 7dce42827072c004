"""Progress lines on stderr (stdout carries the results table)."""

from __future__ import annotations

import sys
import time

__all__ = ["say"]


def say(message: str, who: str = "bench") -> None:
    print(f"[{who} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
