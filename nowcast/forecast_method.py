"""The forecast-method contract and its base class, apart from the registry (``nowcast.methods``) so that the
network's forecaster (``nowcast.forecast``) can build on it without importing the registry that loads it.

    method(inputs, n_out) -> forecasts

inputs: float32 dBZ shaped (T, H, W) or (B, T, H, W), NaN where there is no data.
forecasts: float32 dBZ shaped (n_out, H, W) or (B, n_out, H, W), floored, NaN where the last input frame has no
data (and where a method has no source for a pixel). The full contract is in ``nowcast.methods``.
"""

from __future__ import annotations

import numpy as np

from .errors import NowcastError
from .units import apply_floor


def as_batch(inputs) -> tuple[np.ndarray, bool]:
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise NowcastError(f"forecast inputs must be (T, H, W) or (B, T, H, W), got shape {x.shape}")
    return x, False


def nodata_mask(batch: np.ndarray) -> np.ndarray:
    """(B, H, W) mask of pixels with no data in the last input frame."""
    return np.isnan(batch[:, -1])


class ForecastMethod:
    """Base class: subclasses implement `_forecast_batch` on (B, T, H, W) arrays."""

    name = "method"
    input_frames = 1  # the fewest input frames the method needs
    min_grid = 1  # the smallest grid side (pixels) the method can forecast on

    def __call__(self, inputs, n_out: int = 10) -> np.ndarray:
        batch, single = self._checked(inputs)
        out = self._finish(self._forecast_batch(batch, int(n_out)), batch)
        return out[0] if single else out

    def _checked(self, inputs) -> tuple[np.ndarray, bool]:
        """The inputs as a (B, T, H, W) float32 batch (and whether one sequence was given), checked against what
        the method needs."""
        batch, single = as_batch(inputs)
        if batch.shape[1] < self.input_frames:
            raise NowcastError(
                f"{self.name} needs at least {self.input_frames} input frames, got {batch.shape[1]}"
            )
        if min(batch.shape[2:]) < self.min_grid:
            h, w = batch.shape[2:]
            raise NowcastError(
                f"a grid of {h}x{w} pixels is too small for {self.name} (needs at least "
                f"{self.min_grid}x{self.min_grid})"
            )
        return batch, single

    def _finish(self, out: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """The contract's end of a forecast: float32, floored, no data where the last input has none, then the
        method's own post-processing."""
        out = apply_floor(out.astype(np.float32))
        out[np.broadcast_to(nodata_mask(batch)[:, None], out.shape)] = np.nan
        return self._postprocess(out)

    def _forecast_batch(self, batch: np.ndarray, n_out: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _postprocess(self, forecast: np.ndarray) -> np.ndarray:
        """What the method does to its finished (B, n_out, H, W) forecast, floored and with no data where the
        last input has none; may work in place. Nothing by default."""
        return forecast
