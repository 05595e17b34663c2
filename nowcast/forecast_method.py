"""The forecast-method contract and its base class, apart from the registry (``nowcast.methods``) so that the
network's forecaster (``nowcast.forecast``) can build on it without importing the registry that loads it.

    method(inputs, n_out, motion=None) -> forecasts            (arrays)
    method.forecast(ForecastInput, n_out) -> ForecastOutput     (the types of ``nowcast.forecast_io``)

inputs: float32 dBZ shaped (T, H, W) or (B, T, H, W), NaN where there is no data.
motion: the optical flow of the inputs, (2, H, W) or (B, 2, H, W), estimated once by the caller and passed in
(pysteps' contract); a method that advects (``uses_motion``) estimates it from the inputs when it is not given.
forecasts: float32 dBZ shaped (n_out, H, W) or (B, n_out, H, W), floored, NaN where the last input frame has no
data (and where a method has no source for a pixel). The full contract is in ``nowcast.methods``.
"""

from __future__ import annotations

import numpy as np

from .errors import NowcastError
from .forecast_io import ForecastInput, ForecastOutput, batch_motion, check_motion
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
    uses_motion = False  # whether the method advects along the inputs' optical flow

    def __call__(self, inputs, n_out: int = 10, motion=None) -> np.ndarray:
        batch, single = self._checked(inputs)
        out = self._finish(self._forecast_batch(batch, int(n_out), self._motion_of(batch, motion)), batch)
        return out[0] if single else out

    def forecast(self, inp: ForecastInput, n_out: int = 10) -> ForecastOutput:
        """The forecast of one input, with its valid times, no-data mask, motion and provenance. The input's
        motion is used when it has one; a method that advects estimates it otherwise (and returns it)."""
        if self.uses_motion and inp.motion is None:
            inp = inp.with_motion()
        values = self(inp.frames, n_out, motion=inp.motion if self.uses_motion else None)
        return ForecastOutput(values=values, times=inp.valid_times(int(n_out)), nodata=np.isnan(values),
                              motion=inp.motion if self.uses_motion else None, method=self.name,
                              postprocessing=self.postprocessing(), input=inp)

    def postprocessing(self) -> str:
        """In words, what is done to the method's own forecast (the forecast file's ``nowcast_postprocessing``):
        a model's lead smoothing; wrappers add their own step."""
        smoothing = getattr(self, "lead_smoothing", 0.0)
        return f"lead smoothing in linear Z, Gaussian sigma {smoothing:g} pixel(s) per lead" if smoothing else "none"

    def _motion_of(self, batch: np.ndarray, motion) -> np.ndarray | None:
        """The (B, 2, H, W) flow the method advects with: the one given, else estimated from the inputs; None
        for a method that does not advect."""
        if not self.uses_motion:
            return None
        return batch_motion(batch) if motion is None else check_motion(motion, batch.shape)

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

    def _forecast_batch(self, batch: np.ndarray, n_out: int, motion: np.ndarray | None) -> np.ndarray:
        """(B, n_out, H, W) dBZ from (B, T, H, W) inputs and their (B, 2, H, W) flow (None unless
        ``uses_motion``)."""
        raise NotImplementedError  # pragma: no cover

    def _postprocess(self, forecast: np.ndarray) -> np.ndarray:
        """What the method does to its finished (B, n_out, H, W) forecast, floored and with no data where the
        last input has none; may work in place. Nothing by default."""
        return forecast
