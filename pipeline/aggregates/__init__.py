"""Mergeable numbers: observation deltas, quantile sketches, the bucketed window store, and the
sink domain handlers write observations to.

Pure data structures with no I/O. May import: ``pipeline.settings`` only.
"""

from pipeline.aggregates.delta import Delta, Labels, Value
from pipeline.aggregates.observations import Observations
from pipeline.aggregates.sketch import QuantileSketch
from pipeline.aggregates.windows import WindowSpec, WindowStore, window_specs

__all__ = [
    "Delta",
    "Labels",
    "Observations",
    "QuantileSketch",
    "Value",
    "WindowSpec",
    "WindowStore",
    "window_specs",
]
