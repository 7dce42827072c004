"""`cxpipe act`: deliver `cx.signals` to HTTP webhooks (a Faust app with tables).

Run it with ``cxpipe act`` (``pipeline/act/__main__.py``); importing this package loads no Faust.
May import: ``pipeline.kafka`` and below, ``schemas``.
"""

__all__: list[str] = []
