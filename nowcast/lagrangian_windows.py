"""Training windows in Lagrangian coordinates, and the optical flow behind them, computed once per window.

A Lagrangian model learns in the frame that moves with the optical flow (nowcast.nn.lagrangian). For
training, each window's past frames are advected forward to the time of the last input and its future
frames backward to it, reading a region wide enough for the crop's longest trajectory (only the crop's own
trajectories are integrated): the crop then has a source everywhere except where the radar itself had none.
The loss is taken in that frame.

The flow of a window is the one the forecast would use (Lucas-Kanade on the whole grid, from the window's
input frames). It costs about a second per window on a national grid, so it is computed once, kept
coarsened in float16 in memory and, given a folder, on disk for later runs. The advection itself is
``nowcast.lagrangian_transform.LagrangianTransform``, the one inference uses.

The coarse float16 flow is a deliberate choice: a cached field is 32 times smaller (114 kB instead of
3.6 MB per window on MeteoSwiss' 640 x 710 grid) and a window takes no longer to cut. What it changes was
measured against the full-resolution float32 flow inference uses (benchmarks/bench_lagrangian_flow.py, one
window per service of the pysteps example data, pixels with echo >= 15 dBZ): mean |difference| 0.03-0.13 dBZ,
99th percentile 0.24-1.24 dBZ; largest on BoM's 500 m, 10-minute grid, whose storms move up to 30 pixels a
step (there the worst lead reaches 10 dBZ at the 99th percentile). That is about 1/20 of what estimating the
same flow one frame earlier changes (mean 0.6-2.6 dBZ). On a synthetic storm that only moves it adds 0.5% to
the flow's own error (tests/test_lagrangian_transform.py holds it under 5%, and under 1 dBZ for 99% of echo).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from .lagrangian_transform import LagrangianTransform
from .motion import estimate_motion
from .units import DBZ_FLOOR

CACHE_COARSEN = 4  # flow fields are stored at 1/4 of the grid's resolution


class MotionCache:
    """Optical flow of training windows, keyed by the content of their input frames."""

    def __init__(self, folder: str | os.PathLike | None = None, coarsen: int = CACHE_COARSEN):
        self.folder = Path(folder) if folder is not None else None
        self.coarsen = int(coarsen)
        self._fields: dict = {}
        self.computed = 0  # fields estimated by this process (not read from memory or disk)

    @staticmethod
    def _key(window: np.ndarray) -> str:
        # by content, so a sequence split or renamed between runs still finds its windows' flow
        digest = hashlib.sha1(np.ascontiguousarray(window, dtype=np.float32).tobytes()).hexdigest()[:20]
        return f"{digest}-{'x'.join(map(str, window.shape))}"

    def coarse(self, frames: np.ndarray, start: int, stride: int, n_in: int) -> np.ndarray:
        """The flow of the window whose inputs are frames[start::stride][:n_in], at 1/coarsen resolution:
        (2, ceil(H/c), ceil(W/c)) float16, native pixels per (stride) step."""
        window = frames[start : start + stride * (n_in - 1) + 1 : stride]
        key = self._key(window)
        field = self._fields.get(key)
        if field is None and self.folder is not None and (self.folder / f"{key}.npy").exists():
            field = np.load(self.folder / f"{key}.npy", allow_pickle=False)
        if field is None:
            field = block_mean(estimate_motion(window), self.coarsen).astype(np.float16)
            self.computed += 1
            if self.folder is not None:
                self._save(key, field)
        self._fields[key] = field
        return field

    def _save(self, key: str, field: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{os.getpid()}.tmp.npy"
        np.save(tmp, field, allow_pickle=False)
        os.replace(tmp, self.folder / f"{key}.npy")

    def region(self, coarse: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Native-resolution flow on rows y0..y0+h-1, columns x0..x0+w-1 (beyond the grid: the edge's flow)."""
        c = self.coarsen
        ys = (np.arange(y0, y0 + h, dtype=np.float64) - (c - 1) / 2.0) / c
        xs = (np.arange(x0, x0 + w, dtype=np.float64) - (c - 1) / 2.0) / c
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        return np.stack([ndimage.map_coordinates(comp.astype(np.float32), [gy, gx], order=1, mode="nearest")
                         for comp in coarse]).astype(np.float32)


def block_mean(field: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of (C, H, W); partial blocks at the edges average what they hold."""
    if factor == 1:
        return field
    c, h, w = field.shape
    ph, pw = (-h) % factor, (-w) % factor
    padded = np.pad(field.astype(np.float64), ((0, 0), (0, ph), (0, pw)), constant_values=np.nan)
    blocks = padded.reshape(c, (h + ph) // factor, factor, (w + pw) // factor, factor)
    return np.nanmean(blocks, axis=(2, 4))


def cut_window(frames: np.ndarray, velocity_of, n_in: int, y0: int, x0: int, size: int,
               mode: str = "bilinear") -> np.ndarray:
    """A (L, size, size) dBZ window in Lagrangian coordinates at time n_in - 1, NaN where there is no source.

    frames: the window's L frames on the whole grid (L, H, W), NaN = no data. velocity_of(y, x, h, w)
    returns the flow (2, h, w) on a region of the grid (it may reach beyond the grid). Past frame j is
    advected forward by n_in - 1 - j steps, future frame n_in - 1 + k backward by k steps. ``mode``: how they
    are sampled between pixels (the model's ``advection``).
    """
    n = frames.shape[0]
    n_out = n - n_in
    probe = velocity_of(y0, x0, size, size)
    speed = float(np.sqrt((probe**2).sum(0)).max()) if probe.size else 0.0
    # context for the longest trajectory (BoM's storms move 30+ pixels a step, 300+ over 10 leads); beyond the
    # grid's own size there is nothing more to read. Only the crop's trajectories are integrated.
    margin = min(max(frames.shape[-2:]), int(math.ceil(speed * max(n_in - 1, n_out))) + 2)
    ry, rx, side = y0 - margin, x0 - margin, size + 2 * margin
    region = _padded_region(frames, ry, rx, side)
    transform = LagrangianTransform(torch.from_numpy(velocity_of(ry, rx, side, side))[None], n_in, n_out, mode,
                                    window=(margin, margin, size, size))
    valid = np.isfinite(region)
    values = torch.from_numpy(np.where(valid, region, DBZ_FLOOR).astype(np.float32))[None]
    mask = torch.from_numpy(valid)[None]
    # the data mask travels with the values: a pixel has a source only if its trajectory stays on the region
    # and every pixel it samples (four when bilinear, one when nearest) had data
    past, past_ok = transform.past(values[:, :n_in], mask[:, :n_in])
    future, future_ok = transform.future(values[:, n_in:], mask[:, n_in:])
    ok = torch.cat([past_ok, future_ok], 1)[0]
    out = torch.cat([past, future], 1)[0].masked_fill(~ok, float("nan"))
    return out.numpy()


def _padded_region(frames: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """frames[:, y0:y0+side, x0:x0+side] with NaN where the region reaches beyond the grid."""
    n, h, w = frames.shape
    out = np.full((n, side, side), np.nan, dtype=np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, h), min(x0 + side, w)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frames[:, sy0:sy1, sx0:sx1]
    return out
