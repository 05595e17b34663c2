"""Optical-flow extrapolation, as pysteps does it: Lucas-Kanade motion + semi-Lagrangian advection of the last frame;
and ``extrapolation-smoothed``, the same with smoothing that widens with lead and probability matching."""

from __future__ import annotations

import numpy as np

from ..forecast_method import ForecastMethod
from ..postprocess import lead_smoothing, probability_match
from ..units import DBZ_FLOOR
from .pysteps_import import import_pysteps


class Extrapolation(ForecastMethod):
    """Lucas-Kanade motion + semi-Lagrangian advection of the last frame, as pysteps does it.

    Pixels whose back-trajectory leaves the grid are NaN (no data), not dry.
    """

    name = "extrapolation"
    input_frames = 3
    min_grid = 16  # Lucas-Kanade needs room for its feature windows
    uses_motion = True

    def __init__(self, extrapolation: str = "semilagrangian"):
        self._extrapolate = import_pysteps("extrapolation").get_method(extrapolation)

    def advect(self, seq: np.ndarray, velocity: np.ndarray, n_out: int) -> np.ndarray:
        """(n_out, H, W): the last frame of (T, H, W) dBZ advected along ``velocity`` (2, H, W); NaN where the
        trajectory comes from beyond the grid."""
        last = np.nan_to_num(seq[-1], nan=DBZ_FLOOR).astype(np.float64)
        return self._extrapolate(last, velocity, n_out, outval=np.nan)

    def _forecast_one(self, seq: np.ndarray, velocity: np.ndarray, n_out: int) -> np.ndarray:
        return self.advect(seq, velocity, n_out)

    def _forecast_batch(self, batch, n_out, motion):
        out = np.empty((batch.shape[0], n_out) + batch.shape[2:], dtype=np.float32)
        for i, (seq, velocity) in enumerate(zip(batch, motion)):
            out[i] = self._forecast_one(seq, velocity, n_out)
        return out


class SmoothedExtrapolation(Extrapolation):
    """Extrapolation + smoothing that widens with lead + probability matching to the last observation.

    Advection cannot know where small cells will be at long leads; smoothing in linear Z with
    sigma = lead x 1 pixel spreads that uncertainty (like the ensemble mean of a stochastic nowcast),
    and matching each frame's intensity distribution to the last observed frame undoes the weakening
    of strong echoes that smoothing brings (pysteps' empirical-CDF probability matching). The issue that
    asked for it measured CSI>=30 0.325 against 0.300 for plain extrapolation on unseen radar.
    """

    name = "extrapolation-smoothed"

    def __init__(self, sigma_per_lead: float = 1.0):
        super().__init__()
        self.sigma_per_lead = float(sigma_per_lead)

    def _forecast_one(self, seq, velocity, n_out):
        smoothed = lead_smoothing(self.advect(seq, velocity, n_out), self.sigma_per_lead)
        return probability_match(smoothed, seq[-1])
