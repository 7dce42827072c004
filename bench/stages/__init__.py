"""The measured stages of one benchmark run, one module each (plumbing: ``bench.harness``).

``ceiling``: bare consumer, nothing / orjson / decode_record per record. ``drain``: real
worker processes count the prefill. ``latency``: paced events to counted in /metrics.
``scale``: a consumer group, and the view fold it cannot divide. ``hostile``: garbage mixed
in. ``faust_agent`` and ``quix_survey``: the framework baselines, in child processes.
"""
