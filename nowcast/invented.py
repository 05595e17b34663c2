"""Invented heavy echo: heavy echo in a forecast that the last observation gives no source for.

A nowcast moves, grows and decays the echo it is given; within an hour it cannot know where a new severe cell
will appear. So a forecast pixel at or above ``HEAVY_DBZ`` whose neighbourhood (``RADIUS_KM``) held nothing at or
above ``SOURCE_DBZ`` in the last input frame, carried to the forecast's time along the optical flow, is heavy echo
the method made up. The figure is the fraction of a method's heavy forecast pixels (inside the radar's coverage)
that are such pixels, per lead and pooled. Extrapolation scores near zero by construction (only interpolation
at the edge of a source can put it there); a model that "cries severe cell" scores high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .motion import extrapolate
from .units import DBZ_FLOOR

HEAVY_DBZ = 40.0
SOURCE_DBZ = 35.0
RADIUS_KM = 10.0


def advected_last_input(inputs: np.ndarray, motion: np.ndarray, n_out: int) -> np.ndarray:
    """The last input frame of each (T, H, W) dBZ window of ``inputs`` (B, T, H, W), advected 1..n_out steps
    along the window's optical flow ``motion`` (B, 2, H, W) (the flow extrapolation uses): (B, n_out, H, W),
    the floor where the trajectory comes from beyond the grid or from no data."""
    out = []
    for window, flow in zip(np.asarray(inputs, dtype=np.float32), np.asarray(motion, dtype=np.float32)):
        velocity = torch.from_numpy(np.ascontiguousarray(flow))[None]
        last = torch.from_numpy(np.where(np.isfinite(window[-1]), window[-1], DBZ_FLOOR).astype(np.float32))[None]
        frames, ok = extrapolate(last, velocity, int(n_out))
        out.append(torch.where(ok, frames, torch.full_like(frames, DBZ_FLOOR))[0].numpy())
    return np.stack(out) if out else np.zeros((0, int(n_out)) + np.shape(inputs)[-2:], np.float32)


def disc(radius_px: float) -> np.ndarray:
    """A boolean disc footprint of the given radius in pixels (at least the centre pixel)."""
    r = max(0, int(math.floor(radius_px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= radius_px * radius_px + 1e-9


def source_support(reference: np.ndarray, pixel_km: float, source_dbz: float = SOURCE_DBZ,
                   radius_km: float = RADIUS_KM) -> np.ndarray:
    """Where a forecast may hold heavy echo: pixels within ``radius_km`` of reference echo >= ``source_dbz``.
    ``reference`` (..., H, W) dBZ (NaN counts as no echo); the same shape back, bool."""
    ref = np.asarray(reference)
    if not pixel_km > 0:
        raise ValueError(f"pixel size must be positive, got {pixel_km} km")
    footprint = disc(min(radius_km / pixel_km, max(ref.shape[-2:])))  # no wider than the grid
    source = np.nan_to_num(ref, nan=DBZ_FLOOR) >= source_dbz
    flat = source.reshape((-1,) + ref.shape[-2:])
    grown = np.stack([ndimage.binary_dilation(f, structure=footprint) for f in flat]) if flat.size else flat
    return grown.reshape(ref.shape)


_METRES = ("m", "metre", "meter", "metres", "meters")
_KILOMETRES = ("km", "kilometre", "kilometer", "kilometres", "kilometers")


def pixel_km_of(seq) -> float:
    """The grid spacing in km from a DataArray's x coordinate in metres or km (as open_radar keeps it); 1 km
    when the sequence has no x coordinate with such units (a plain array, pixel indices)."""
    x = seq.coords.get("x") if hasattr(seq, "coords") else None
    if x is None or x.size < 2:
        return 1.0
    units = str(x.attrs.get("units", "")).strip().lower()
    scale = 1e-3 if units in _METRES else 1.0 if units in _KILOMETRES else None
    step = float(np.median(np.abs(np.diff(np.asarray(x.values, dtype=np.float64)))))
    return step * scale if scale is not None and step > 0 else 1.0


@dataclass(frozen=True)
class InventedEcho:
    """Per lead: forecast pixels at >= HEAVY_DBZ inside the radar's coverage, and those without a source."""

    heavy_per_lead: tuple[int, ...]
    invented_per_lead: tuple[int, ...]

    @property
    def per_lead(self) -> tuple[float, ...]:
        """The invented fraction per lead (NaN for a lead with no heavy forecast pixel)."""
        return tuple(i / h if h else float("nan") for i, h in zip(self.invented_per_lead, self.heavy_per_lead))

    @property
    def pooled(self) -> float:
        heavy = sum(self.heavy_per_lead)
        return sum(self.invented_per_lead) / heavy if heavy else float("nan")

    def to_dict(self) -> dict:
        return {"invented_heavy": self.pooled, "invented_heavy_per_lead": list(self.per_lead),
                "heavy_pixels_per_lead": list(self.heavy_per_lead),
                "invented_pixels_per_lead": list(self.invented_per_lead)}


class InventedEchoAccumulator:
    """Counts of heavy and invented heavy forecast pixels per lead, summed over windows; merges exactly."""

    def __init__(self, n_leads: int, heavy_dbz: float = HEAVY_DBZ):
        self.n_leads = int(n_leads)
        self.heavy_dbz = float(heavy_dbz)
        self.heavy = np.zeros(self.n_leads, dtype=np.int64)
        self.invented = np.zeros(self.n_leads, dtype=np.int64)

    def update(self, forecast, observed, support) -> "InventedEchoAccumulator":
        """forecast, observed (dBZ) and support (bool, ``source_support``), all (B, n_leads, H, W)."""
        fc, obs, sup = np.asarray(forecast), np.asarray(observed), np.asarray(support, dtype=bool)
        if not fc.shape == obs.shape == sup.shape or fc.ndim != 4 or fc.shape[1] != self.n_leads:
            raise ValueError(f"expected three (B, {self.n_leads}, H, W) arrays, got {fc.shape}, {obs.shape}, "
                             f"{sup.shape}")
        heavy = np.isfinite(obs) & (np.nan_to_num(fc, nan=DBZ_FLOOR) >= self.heavy_dbz)
        self.heavy += heavy.sum(axis=(0, 2, 3))
        self.invented += (heavy & ~sup).sum(axis=(0, 2, 3))
        return self

    def merge(self, other: "InventedEchoAccumulator") -> "InventedEchoAccumulator":
        if (other.n_leads, other.heavy_dbz) != (self.n_leads, self.heavy_dbz):
            raise ValueError("can only merge invented-echo counts of the same leads and threshold")
        self.heavy += other.heavy
        self.invented += other.invented
        return self

    def result(self) -> InventedEcho:
        return InventedEcho(tuple(int(v) for v in self.heavy), tuple(int(v) for v in self.invented))
