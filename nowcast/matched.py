"""Post-processing that wraps any forecast method (``ProbabilityMatched``), and what a method's forecast went
through in words (``postprocessing_of``, the forecast file's ``nowcast_postprocessing``)."""

from __future__ import annotations

import numpy as np

from .forecast_method import ForecastMethod
from .postprocess import probability_match


class ProbabilityMatched(ForecastMethod):
    """Any method with each forecast frame's intensity distribution matched to the last observation.

    Named ``<method>+pm``; anything else (a model's ``info``, ``config``...) is the wrapped method's.
    """

    def __init__(self, method: ForecastMethod):
        self.inner = method
        self.name = f"{method.name}+pm"
        self.input_frames = method.input_frames
        self.min_grid = method.min_grid

    def __getattr__(self, attr):
        # only called for attributes this wrapper lacks: the CLI reads a model's info through it
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def _forecast_batch(self, batch, n_out):
        forecast = self.inner(batch, n_out)
        return np.stack([probability_match(fc, seq[-1]) for fc, seq in zip(forecast, batch)])


def postprocessing_of(method: ForecastMethod) -> str:
    """In words, what is done to a method's own forecast: a model's lead smoothing, probability matching."""
    steps = []
    smoothing = getattr(method, "lead_smoothing", 0.0)  # a model's (through a ProbabilityMatched wrapper too)
    if smoothing:
        steps.append(f"lead smoothing in linear Z, Gaussian sigma {smoothing:g} pixel(s) per lead")
    if isinstance(method, ProbabilityMatched):
        steps.append("probability matching to the last observation")
    return "; ".join(steps) or "none"
