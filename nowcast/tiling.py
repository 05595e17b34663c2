"""Tiled inference: a network run window by window over a large grid, blended without seams.

A grid is cut into cores (``tile`` pixels, a multiple of the network's pad multiple, so every window
starts on the same patch and encoder grid as the whole-grid run). Each core is computed in a window that
adds ``halo`` pixels of real neighbours on every side (fewer at the grid's edges, where the whole-grid run
sees the same zero padding), and only the window's centre is kept. Around each boundary between two cores
the two results are blended over ``blend`` pixels with weights s and 1 - s, s = sin^2 rising from 0 to 1,
so the weights of every pixel sum to one and no seam shows where neighbouring windows differ a little.

How close this is to the whole-grid result depends on how far the network's influence reaches. Where
the halo covers the receptive field the two agree to float rounding; a recurrent network's receptive
field grows with every step and its influence fades only gradually, so for the shipped model the halo
is a measured compromise (see ``halo_for``). The numerical core here raises ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# Grids with more pixels than this are tiled unless told otherwise: the network's memory grows with the grid.
# What a 2200 x 1900 grid peaks at, whole and in tiles, is in benchmarks/scale.json (section memory); most of
# it is the optical flow and the forecast arrays, which always cover the whole grid.
AUTO_TILE_PIXELS = 1536 * 1536
DEFAULT_TILE = 512
# The halo of the shipped Lagrangian model (patch 4, 5 -> 10 frames); see halo_for.
LAGRANGIAN_HALO = 64


@dataclass(frozen=True)
class Span:
    """One tile along one axis: the window computed [start, stop) and its core [core_start, core_stop)."""

    start: int
    stop: int
    core_start: int
    core_stop: int


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def spans(size: int, tile: int, halo: int, multiple: int = 1) -> list[Span]:
    """Tiles along one axis of ``size`` pixels: cores of ``tile`` pixels (the last one takes the rest,
    between half and one and a half tiles), windows reaching ``halo`` pixels further on both sides.

    tile and halo are rounded up to ``multiple``, so every window starts on a multiple of it.
    """
    if size < 1 or tile < 1 or halo < 0 or multiple < 1:
        raise ValueError(f"bad tiling: size={size}, tile={tile}, halo={halo}, multiple={multiple}")
    tile, halo = _round_up(tile, multiple), _round_up(halo, multiple)
    bounds = list(range(0, size, tile)) + [size]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < tile // 2:
        del bounds[-2]  # a sliver at the end joins the core before it
    return [Span(max(0, a - halo), min(size, b + halo), a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def ramp(width: int) -> np.ndarray:
    """The rising half of a blend over ``width`` pixels: sin^2 from near 0 to near 1, symmetric, so that
    ``ramp(w) + ramp(w)[::-1] == 1`` (float64)."""
    t = (np.arange(width, dtype=np.float64) + 0.5) / width
    return np.sin(0.5 * np.pi * t) ** 2


def weights_1d(all_spans: list[Span], blend: int) -> list[np.ndarray]:
    """Each span's weight over its window (float64): 1 in its core away from boundaries, 0 outside the
    core's blend zone, and s / 1 - s across each boundary, ``blend`` pixels wide and centred on it."""
    half = blend // 2
    blend = 2 * half
    for prev, nxt in zip(all_spans[:-1], all_spans[1:]):
        if half > min(nxt.core_start - nxt.start, prev.stop - prev.core_stop) or \
                blend > min(prev.core_stop - prev.core_start, nxt.core_stop - nxt.core_start):
            raise ValueError(f"a blend of {blend} pixels does not fit tiles {prev} and {nxt}")
    up = ramp(blend)
    out = []
    for i, s in enumerate(all_spans):
        w = np.zeros(s.stop - s.start)
        lo, hi = s.core_start - s.start, s.core_stop - s.start
        w[lo:hi] = 1.0
        if i > 0 and half:
            w[lo - half : lo + half] = up
        if i < len(all_spans) - 1 and half:
            w[hi - half : hi + half] = 1.0 - up
        out.append(w)
    return out


@dataclass(frozen=True)
class Tile:
    """A window of the grid (rows, cols slices) and the weight (h, w) its result gets there."""

    rows: slice
    cols: slice
    weight: np.ndarray


def tiles(shape: tuple[int, int], tile: int, halo: int, multiple: int = 1, blend: int | None = None) -> list[Tile]:
    """The tiles of an (H, W) grid; their weights sum to one at every pixel.

    blend defaults to half the halo (even, and at most half a tile): each side of a boundary then still
    has half a halo of real neighbours where its weight is not zero.
    """
    h, w = shape
    halo = _round_up(halo, multiple)
    blend = 2 * (min(halo // 2, _round_up(tile, multiple) // 2) // 2) if blend is None else int(blend)
    if blend < 0 or blend // 2 > halo:
        raise ValueError(f"blend must lie between 0 and twice the halo ({2 * halo}), got {blend}")
    rows, cols = spans(h, tile, halo, multiple), spans(w, tile, halo, multiple)
    wr, wc = weights_1d(rows, blend), weights_1d(cols, blend)
    return [Tile(slice(r.start, r.stop), slice(c.start, c.stop), np.outer(a, b).astype(np.float32))
            for r, a in zip(rows, wr) for c, b in zip(cols, wc)]


def halo_for(config, n_out: int, lagrangian: bool) -> int:
    """Halo (pixels) for tiling a network with ``config`` over ``n_out`` leads.

    A recurrent network's exact receptive field grows by every convolution of every layer at each of its
    T + n_out - 1 steps: for the shipped model (patch 4, 5 -> 10) it is wider than a national composite,
    so no practical halo makes tiles agree with the whole grid to rounding. Its influence decays, though.
    Cutting the FMI composite at a window edge changes the shipped model's forecast, r pixels inside, by
    at most 0.001 dBZ at lead 1 (r = 32), and at lead 10 by 0.45 (r = 48), 0.26 (64), 0.14 (128) and
    0.06 dBZ (400): a long, faint tail. LAGRANGIAN_HALO = 64 keeps the blended forecast within a fraction
    of the 0.5 dBZ step radar data come in (measured on that composite with tiles of 512: at most 0.37 dBZ,
    0.003 dBZ on average). Longer rollouts and larger patches reach further, so the halo grows with them
    (never below the shipped model's). An Eulerian network moves the echoes itself: its halo also covers
    how far they travel in n_out steps (8 pixels a step is taken: 27 m/s on a 1 km, 5-minute grid).
    """
    steps = int(config.input_frames) + int(n_out) - 1
    base = LAGRANGIAN_HALO * max(1.0, int(config.patch_size) / 4) * max(1.0, steps / 14)
    if not lagrangian:
        base += 8 * int(n_out)
    return _round_up(int(math.ceil(base)), int(config.pad_multiple))


def run_tiled(fn, x: torch.Tensor, n_out: int, tile_list: list[Tile]) -> torch.Tensor:
    """fn((B, T, h, w)) -> (B, n_out, h, w), run on every tile of x (B, T, H, W) and blended: (B, n_out, H, W).

    A window that is all zero (no echo anywhere in it, in every frame) gives the same result wherever it
    lies, so it is computed once per window shape.
    """
    b, _, h, w = x.shape
    out = x.new_zeros((b, n_out, h, w), dtype=torch.float32)
    empty: dict = {}
    for t in tile_list:
        window = x[:, :, t.rows, t.cols]
        if not bool(window.any()):
            key = tuple(window.shape)
            if key not in empty:
                empty[key] = fn(window).float()
            res = empty[key]
        else:
            res = fn(window).float()
        out[:, :, t.rows, t.cols] += res * torch.from_numpy(t.weight).to(out.device)
    return out
