"""``cxpipe demo``: a worker and the shop simulator on one broker, with a live terminal view.

Modules: :mod:`.scrape` (metric families by sample name), :mod:`.view_model` (pure: families ->
the numbers of each dashboard section), :mod:`.alert_rules` (thresholds read from the Prometheus
rule file), :mod:`.trend` (sparklines, counter rates), :mod:`.render` (rich and plain text),
:mod:`.screen` (state between refreshes), :mod:`.keys` (single-key commands), :mod:`.run` (the
loop).
"""

from pipeline.tools.demo.run import demo_settings, run_demo, window_names

__all__ = ["demo_settings", "run_demo", "window_names"]
