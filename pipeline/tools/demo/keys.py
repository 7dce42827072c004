"""Single-key commands while the live view runs (``w``: next window, ``q``: quit).

Only when stdin is a terminal: it is put in cbreak mode (keys arrive unbuffered, Ctrl-C still
interrupts) and restored on exit, whatever happens. Anywhere else this does nothing, so a demo
under a pipe, ``nohup`` or a test never blocks on or eats stdin.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def key_commands(on_key: Callable[[str], None]) -> Iterator[bool]:
    """Call ``on_key(char)`` for each key pressed; yields whether keys are being read."""
    try:
        fd = sys.stdin.fileno()
        interactive = os.isatty(fd)
        saved = termios.tcgetattr(fd) if interactive else None
    except (OSError, ValueError, termios.error):
        interactive, saved = False, None
    if not interactive or saved is None:
        yield False
        return
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        for char in data.decode(errors="ignore"):
            on_key(char)

    tty.setcbreak(fd)
    loop.add_reader(fd, readable)
    try:
        yield True
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
