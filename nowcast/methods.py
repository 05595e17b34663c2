"""Forecast methods: one object, one call (inputs in dBZ -> forecasts in dBZ).

Every method - persistence, optical-flow extrapolation, the trained network - follows the same contract:

    method(inputs, n_out) -> forecasts

inputs: float32 dBZ shaped (T, H, W) or (B, T, H, W), NaN where there is no data.
forecasts: float32 dBZ shaped (n_out, H, W) or (B, n_out, H, W), floored at -10 dBZ, NaN where the
last input frame has no data (no-data regions are kept as no data, DESIGN.md).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from .errors import MissingDependencyError, NowcastError
from .units import DBZ_FLOOR, apply_floor


def _as_batch(inputs) -> tuple[np.ndarray, bool]:
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
        batch, single = _as_batch(inputs)
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
        out = self._forecast_batch(batch, int(n_out)).astype(np.float32)
        out = apply_floor(out)
        out[np.broadcast_to(nodata_mask(batch)[:, None], out.shape)] = np.nan
        return out[0] if single else out

    def _forecast_batch(self, batch: np.ndarray, n_out: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class Persistence(ForecastMethod):
    """The last observed frame, repeated: the forecast every method must beat."""

    name = "persistence"

    def _forecast_batch(self, batch, n_out):
        return np.repeat(batch[:, -1:], n_out, axis=1)


class Extrapolation(ForecastMethod):
    """Lucas-Kanade motion + semi-Lagrangian advection of the last frame, as pysteps does it."""

    name = "extrapolation"
    input_frames = 3
    min_grid = 16  # Lucas-Kanade needs room for its feature windows

    def __init__(self, motion: str = "LK", extrapolation: str = "semilagrangian"):
        try:
            # pysteps prints where it found its configuration file on import; keep stdout clean
            with contextlib.redirect_stdout(io.StringIO()):
                from pysteps import extrapolation as pext
                from pysteps import motion as pmotion
            import cv2  # noqa: F401  (pysteps' LK needs OpenCV)
        except ImportError as exc:
            raise MissingDependencyError(
                "the extrapolation method needs pysteps and OpenCV: pip install 'nowcast[pysteps]'"
            ) from exc
        self._motion = pmotion.get_method(motion)
        self._extrapolate = pext.get_method(extrapolation)

    def _forecast_batch(self, batch, n_out):
        out = np.empty((batch.shape[0], n_out) + batch.shape[2:], dtype=np.float32)
        for i, seq in enumerate(batch):
            # pysteps wants no-echo and no-data as finite values for the motion field
            filled = np.nan_to_num(seq, nan=DBZ_FLOOR).astype(np.float64)
            with warnings.catch_warnings():
                # LK warns about singular matrices on echo-free or uniform areas; harmless here
                warnings.simplefilter("ignore", UserWarning)
                velocity = self._motion(filled, verbose=False)
            fc = self._extrapolate(filled[-1], velocity, n_out, outval=DBZ_FLOOR)
            out[i] = np.nan_to_num(fc, nan=DBZ_FLOOR)
        return out


BUILTIN_METHODS = {"persistence": Persistence, "extrapolation": Extrapolation}


def get_method(name: str) -> ForecastMethod:
    """A built-in method by name ('persistence', 'extrapolation')."""
    try:
        return BUILTIN_METHODS[name]()
    except KeyError:
        raise NowcastError(
            f"unknown method {name!r}; choose one of {', '.join(sorted(BUILTIN_METHODS))} or give --model"
        ) from None
