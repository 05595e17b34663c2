"""Post-processing that wraps any forecast method: ``ProbabilityMatched``."""

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

    @property
    def uses_motion(self) -> bool:
        return self.inner.uses_motion

    def _forecast_batch(self, batch, n_out, motion):
        forecast = self.inner(batch, n_out, motion=motion)
        return np.stack([probability_match(fc, seq[-1]) for fc, seq in zip(forecast, batch)])

    def postprocessing(self) -> str:
        inner = self.inner.postprocessing()
        matching = "probability matching to the last observation"
        return matching if inner == "none" else f"{inner}; {matching}"
