"""What a forecast method reads and what it gives back, as two types: ``ForecastInput`` and ``ForecastOutput``.

Whoever has the frames builds the input once (the pipeline, the scorer, the watcher), and with it the motion
field: methods that advect take the velocity they are given (pysteps' contract) instead of each estimating it
again. The output carries the forecast with what it is needed to place and explain it: valid times, the no-data
mask, the motion it was advected with and the method's name and post-processing.

    inp = ForecastInput.from_sequence(past, motion=True)   # past: (time, y, x) dBZ from radar.open_radar
    out = method.forecast(inp, 10)                         # out.values (10, H, W) dBZ at out.times
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from .errors import NowcastError
from .timeaxis import regular_step, valid_times


def estimate_motion(frames_dbz) -> np.ndarray:
    """The optical flow of (T, H, W) dBZ frames, (2, H, W) pixels per step (``motion.estimate_motion``)."""
    from .motion import estimate_motion as lucas_kanade  # torch and pysteps: only when a flow is wanted

    return lucas_kanade(frames_dbz)


def batch_motion(batch) -> np.ndarray:
    """The optical flow of each (T, H, W) window of a (B, T, H, W) batch: (B, 2, H, W)."""
    batch = np.asarray(batch)
    if len(batch) == 0:
        return np.zeros((0, 2) + batch.shape[2:], np.float32)
    return np.stack([estimate_motion(window) for window in batch])


def check_motion(motion, shape: tuple[int, ...]) -> np.ndarray:
    """A velocity field for a (B, T, H, W) batch as (B, 2, H, W) float32; one (2, H, W) field is taken for a
    batch of one. NowcastError when its shape does not fit the frames."""
    b, _, h, w = shape
    velocity = np.asarray(motion, dtype=np.float32)
    if velocity.shape == (2, h, w) and b == 1:
        velocity = velocity[None]
    if velocity.shape != (b, 2, h, w):
        raise NowcastError(f"a motion field shaped {velocity.shape} does not fit frames shaped {shape}: "
                           f"it must be (2, {h}, {w}) per window")
    return velocity


@dataclass(frozen=True)
class ForecastInput:
    """The frames a forecast starts from.

    frames: (T, H, W) float32 dBZ, NaN where there is no data; times: their valid times (datetime64[ns]);
    step: the regular step between them (None for one frame); grid: the last frame as a DataArray (its x/y
    coordinates, grid mapping and the reading's attributes: where the forecast lies); kind: what the source held
    (``radar.open_radar``'s ``input_kind``: dbz, rate, accumulation or pixels); motion: the optical flow of the
    frames, (2, H, W) pixels per step in ``nowcast.motion``'s conventions, or None when not estimated.
    """

    frames: np.ndarray
    times: np.ndarray
    step: np.timedelta64 | None
    grid: xr.DataArray
    kind: str = "dbz"
    motion: np.ndarray | None = None

    @classmethod
    def from_sequence(cls, seq: xr.DataArray, motion=False) -> "ForecastInput":
        """The input of a (time, y, x) dBZ sequence. motion: True estimates the flow of its frames once, an
        array is taken as the flow, False/None leaves it out."""
        frames = np.asarray(seq.values, dtype=np.float32)
        times = np.asarray(seq["time"].values).astype("datetime64[ns]")
        inp = cls(frames=frames, times=times, step=regular_step(times), grid=seq.isel(time=-1),
                  kind=str(seq.attrs.get("input_kind", "dbz")))
        if motion is True:
            return inp.with_motion()
        return inp if motion is None or motion is False else inp.with_motion(motion)

    def with_motion(self, motion=None) -> "ForecastInput":
        """The same input with a motion field: the one given, or the frames' own optical flow."""
        velocity = estimate_motion(self.frames) if motion is None else motion
        return replace(self, motion=check_motion(velocity, (1,) + self.frames.shape)[0])

    def valid_times(self, leads: int) -> np.ndarray:
        """The valid times of leads 1..leads: the last frame's time plus k steps."""
        if self.step is None:
            raise NowcastError("a single frame has no time step, so its forecast has no valid times")
        return valid_times(self.times[-1], self.step, leads)


@dataclass(frozen=True)
class ForecastOutput:
    """A method's forecast and its provenance.

    values: (n, H, W) float32 dBZ, floored, NaN = no data; times: their valid times; nodata: where there is no
    forecast (the last input had no data, or the trajectory comes from beyond the grid); motion: the flow it was
    advected with (None for a method that does not advect); method: the method's name; postprocessing: what was
    done to the method's own forecast, in words; input: what it was made from.
    """

    values: np.ndarray
    times: np.ndarray
    nodata: np.ndarray
    motion: np.ndarray | None
    method: str
    postprocessing: str
    input: ForecastInput
