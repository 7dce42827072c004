"""cx-pipeline: exact real-time CX metrics from shop events on Kafka.

Layers, each a package that imports only the ones below it (``tests/unit/test_layers.py``):

    tools       cli, demo, emit, simulate: what a person runs
    act         `cxpipe act`: the Faust app that delivers signals to webhooks
    collector   `cxpipe collect`: HTTP intake (Segment-compatible), produces to the topics
    worker      the worker process: ingest, delivery, recovery, orders barrier, view loop
    http        HTTP servers: /metrics and health
    kafka       Kafka plumbing: topic names and creation, client helpers, the embedded broker
    engine      exactly-once machinery: partition processor, checkpoints, dedupe, view (no I/O)
    domain      CX rules per topic and each domain's metric definitions (no I/O)
    aggregates  mergeable numbers: deltas, quantile sketches, window store, observation sink
    settings    configuration from CX_* environment variables

``schemas`` (the event contract) sits below all of them.
"""
