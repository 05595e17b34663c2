"""Persistence: the last observed frame, repeated."""

from __future__ import annotations

import numpy as np

from ..forecast_method import ForecastMethod


class Persistence(ForecastMethod):
    """The last observed frame, repeated: the forecast every method must beat."""

    name = "persistence"

    def _forecast_batch(self, batch, n_out, motion):
        return np.repeat(batch[:, -1:], n_out, axis=1)
