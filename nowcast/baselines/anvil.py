"""pysteps' ANVIL nowcast: extrapolation plus growth and decay, on rain rate."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..forecast_method import ForecastMethod
from ..units import DBZ_FLOOR, dbz_to_rainrate, rainrate_to_dbz
from .pysteps_import import import_pysteps


class Anvil(ForecastMethod):
    """pysteps' ANVIL nowcast (Pulkkinen et al. 2020): extrapolation plus growth and decay.

    The advected inputs are split into a cascade of spatial scales, and each scale follows a local
    autoregressive integrated ARI(2,1) model, so intensities can grow and decay. Run on rain rate
    (Marshall-Palmer from dBZ, no echo = 0 mm/h) as its documentation allows, with pysteps' defaults
    (6 cascade levels, window radius 50 pixels); back to dBZ afterwards. Where the last observation,
    carried along the flow, has under 0.1 mm/h (7 dBZ), ANVIL forecasts no rain (its rain-rate mask), so
    it creates no new cells; beyond the grid, no data. About three times the cost of extrapolation.
    """

    name = "anvil"
    ar_order = 2
    input_frames = ar_order + 2
    min_grid = 32  # a 6-level cascade needs a few wavelengths of room
    uses_motion = True

    def __init__(self):
        self._anvil = import_pysteps("nowcasts").get_method("anvil")

    def _forecast_one(self, seq: np.ndarray, velocity: np.ndarray, n_out: int) -> np.ndarray:
        frames = np.nan_to_num(seq[-self.input_frames:], nan=DBZ_FLOOR)
        rate = np.where(frames > DBZ_FLOOR, dbz_to_rainrate(frames), 0.0)  # the floor is no echo, not drizzle
        velocity = np.asarray(velocity, dtype=np.float64)
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(invalid="ignore", divide="ignore"):
            forecast = self._anvil(rate, velocity, n_out, ar_order=self.ar_order)
        return rainrate_to_dbz(forecast)

    def _forecast_batch(self, batch, n_out, motion):
        return np.stack([self._forecast_one(seq, velocity, n_out) for seq, velocity in zip(batch, motion)])
