"""What a person runs: the ``cxpipe`` CLI, the live demo, ``emit`` and the shop simulator.

The top layer: may import any ``pipeline`` package (and ``bench`` for ``cxpipe bench``).
"""

from pipeline.tools.cli import app, main

__all__ = ["app", "main"]
