"""Motion fields from radar frames, and semi-Lagrangian advection in torch.

Conventions (those of pysteps, so fields can be handed back and forth):
- a velocity field is (2, H, W) float32: [0] = x (columns, right positive), [1] = y (rows, down positive),
  in grid pixels per time step of the frames it was estimated from;
- advection is backward semi-Lagrangian: the value at pixel p after k steps is the source frame sampled
  (bilinearly) at p + D_k(p), where the displacement D_k points upstream. D_k is built step by step with the
  midpoint rule that pysteps' ``extrapolation.semilagrangian`` uses, so a frame advected here equals pysteps'
  extrapolation up to floating-point rounding. Points whose trajectory leaves the grid have no source:
  they are marked invalid (pysteps fills them with ``outval``).

Everything in torch is batched, differentiable with respect to the advected field, and runs on CPU or CUDA.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .units import DBZ_FLOOR


LK_CHUNK_PIXELS = 2**18  # pysteps interpolates the sparse LK vectors over this many pixels at a time


def estimate_motion(frames_dbz, method: str = "LK") -> np.ndarray:
    """Optical-flow motion of a (T, H, W) dBZ sequence (NaN = no data): (2, H, W) pixels per step.

    pysteps' dense Lucas-Kanade by default, with no data and no echo both at the floor (as the
    extrapolation baseline does). A sequence without trackable features gives a zero field.
    Nothing is remembered: whoever builds a forecast's input estimates its flow once and passes it on
    (``nowcast.forecast_io``).
    """
    frames = np.asarray(frames_dbz, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"motion needs frames shaped (T >= 2, H, W), got {frames.shape}")
    return _lucas_kanade(frames, method)


def _lucas_kanade(frames: np.ndarray, method: str) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):  # pysteps announces its config file on import
        from pysteps import motion as pmotion
    filled = np.nan_to_num(frames, nan=DBZ_FLOOR)
    extra = {}
    if method.lower() in ("lk", "lucaskanade"):
        # pysteps interpolates the sparse vectors onto the whole grid in one piece (its own chunking is lost
        # after two calls), so its memory grows with the grid; explicit chunks give the same field.
        per_axis = max(1, math.ceil(math.sqrt(filled[0].size / LK_CHUNK_PIXELS)))
        extra["interp_kwargs"] = {"nchunks": per_axis * per_axis}
    with warnings.catch_warnings():
        # LK warns about singular matrices on echo-free or uniform areas; harmless here
        warnings.simplefilter("ignore")
        velocity = pmotion.get_method(method)(filled, verbose=False, **extra)
    velocity = np.nan_to_num(np.asarray(velocity, dtype=np.float32), nan=0.0)
    return velocity


# ---------------------------------------------------------------------------------------------
# torch advection


_GRIDS: dict = {}


def _pixel_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(2, H, W) pixel coordinates [x, y] of every grid point (kept per size, device and dtype)."""
    key = (h, w, like.dtype, like.device)
    grid = _GRIDS.get(key)
    if grid is None:
        ys = torch.arange(h, dtype=like.dtype, device=like.device)
        xs = torch.arange(w, dtype=like.dtype, device=like.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy])
        if len(_GRIDS) > 64:
            _GRIDS.clear()
        _GRIDS[key] = grid
    return grid


# How a frame is sampled where a trajectory starts between pixels. Bilinear averages a narrow heavy core with its
# weaker neighbours, so heavy echo loses area at every sub-pixel shift; nearest moves every value unchanged
# (benchmarks/bench_advection_interp.py measures what each keeps). Flow fields are always sampled bilinearly.
ADVECTION_MODES = ("bilinear", "nearest")


def _sample(field: torch.Tensor, coords: torch.Tensor, padding: str, mode: str = "bilinear") -> torch.Tensor:
    """Samples of (B, C, H, W) at pixel coordinates (B, 2, H', W') [x, y], bilinear or nearest."""
    h, w = field.shape[-2:]
    scale = coords.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]).view(1, 2, 1, 1)
    grid = (coords * scale - 1.0).permute(0, 2, 3, 1)  # grid_sample's (B, H', W', [x, y]) layout
    return F.grid_sample(field, grid, mode=mode, padding_mode=padding, align_corners=True)


def _start_points(h: int, w: int, like: torch.Tensor, window=None) -> torch.Tensor:
    """(1, 2, h', w') pixel coordinates [x, y] where trajectories start: every pixel of an (h, w) grid, or only
    those of ``window`` = (y0, x0, h', w') on it (a crop: its trajectories still read the whole grid)."""
    if window is None:
        return _pixel_grid(h, w, like).unsqueeze(0)
    y0, x0, wh, ww = (int(v) for v in window)
    offset = like.new_tensor([x0, y0]).view(2, 1, 1)
    return (_pixel_grid(wh, ww, like) + offset).unsqueeze(0)


def displacements(velocity: torch.Tensor, steps: int, start: torch.Tensor | None = None,
                  window=None) -> torch.Tensor:
    """Upstream displacements D_1..D_steps of backward semi-Lagrangian advection.

    velocity: (B, 2, H, W) pixels per step -> (B, steps, 2, H, W). Follows pysteps' scheme: at each
    step the velocity is read at the midpoint of the step's path, and the velocity beyond the grid is
    that of the nearest edge pixel. ``start``: D_k (B, 2, H, W) to continue from, giving D_k+1..D_k+steps
    (the same values a longer run from the start gives: the step's state is a function of D_k alone).
    ``window`` = (y0, x0, h, w): trajectories of that crop's pixels only, (B, steps, 2, h, w) (the velocity is
    still read wherever they go).
    """
    if velocity.dim() != 4 or velocity.shape[1] != 2:
        raise ValueError(f"velocity must be (B, 2, H, W), got {tuple(velocity.shape)}")
    with _full_precision(velocity):
        velocity = velocity.float()
        b = velocity.shape[0]
        xy = _start_points(*velocity.shape[-2:], velocity, window)
        h, w = xy.shape[-2:]
        if start is None:
            disp = velocity.new_zeros(b, 2, h, w)
            # the whole grid's velocity as it is (no round trip through normalised coordinates), or the crop's
            increment = velocity if window is None else _sample(velocity, xy.expand(b, -1, -1, -1), "border")
        else:
            disp = start.float()
            increment = _sample(velocity, xy + disp, "border")
        out = []
        for _ in range(int(steps)):
            increment = _sample(velocity, xy + disp - increment / 2.0, "border")
            disp = disp - increment
            increment = _sample(velocity, xy + disp, "border")
            out.append(disp)
        return torch.stack(out, 1) if out else velocity.new_zeros(b, 0, 2, h, w)


def inside(disp: torch.Tensor, tolerance: float = 1e-4, window=None, grid=None) -> torch.Tensor:
    """Where p + D stays on the grid (bool, same shape as ``disp`` without its component axis). With
    ``window`` = (y0, x0, h, w), D holds that crop's trajectories on a grid of shape ``grid`` = (H, W)."""
    h, w = disp.shape[-2:] if window is None else grid
    xy = _start_points(h, w, disp, window)[0]
    x = xy[0] + disp.select(-3, 0)
    y = xy[1] + disp.select(-3, 1)
    return (x >= -tolerance) & (x <= w - 1 + tolerance) & (y >= -tolerance) & (y <= h - 1 + tolerance)


def warp(field: torch.Tensor, disp: torch.Tensor, mode: str = "bilinear", window=None) -> torch.Tensor:
    """Sample fields (B, H, W) at p + D for displacements (B, 2, H, W); zero beyond the grid.
    ``mode``: one of ADVECTION_MODES. ``window`` = (y0, x0, h, w): D (B, 2, h, w) holds the trajectories of that
    crop only, and the result is the crop's (B, h, w).

    Differentiable with respect to ``field``. Use :func:`inside` for where the result has a source.
    """
    squeeze = field.dim() == 3
    f = field.unsqueeze(1) if squeeze else field
    coords = _start_points(*f.shape[-2:], disp, window) + disp.to(f.dtype)
    out = _sample(f, coords, "zeros", mode)
    return out[:, 0] if squeeze else out


def extrapolate(frame: torch.Tensor, velocity: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Advect (B, H, W) frames by 1..steps steps of ``velocity``: (B, steps, H, W) and its validity mask."""
    disp = displacements(velocity, steps)
    b, n = disp.shape[:2]
    flat = disp.reshape(b * n, *disp.shape[2:])
    src = frame.unsqueeze(1).expand(b, n, *frame.shape[-2:]).reshape(b * n, *frame.shape[-2:])
    out = warp(src, flat).reshape(b, n, *frame.shape[-2:])
    return out, inside(disp)


def advect_frames(frames: torch.Tensor, velocity: torch.Tensor, leads, disp: torch.Tensor | None = None,
                  valid: torch.Tensor | None = None, mode: str = "bilinear",
                  window=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Advect frame j of (B, N, H, W) by ``leads[j]`` steps of ``velocity`` (B, 2, H, W) (0 = unchanged).

    Returns the advected frames and where they have a source (bool, same shape): the trajectory stays on
    the grid and, given ``valid`` (B, N, H, W: where the frames have data), the pixels it samples all had
    data (the mask is warped with the values). ``nowcast.lagrangian_transform`` says which leads and which
    sign of the velocity each use of the Lagrangian frame takes.
    ``disp``: ``displacements(velocity, S, window=window)`` with S >= max(leads), when the caller has them
    already (one set serves the past frames and the forecast). Frames are warped one at a time, so a large grid
    never holds every lead's sampling grid at once. ``mode``: how frames are sampled (ADVECTION_MODES).
    ``window`` = (y0, x0, h, w): only that crop of the result, (B, N, h, w), its trajectories alone integrated.
    """
    leads = [int(k) for k in leads]
    if len(leads) != frames.shape[1]:
        raise ValueError(f"{len(leads)} leads for {frames.shape[1]} frames")
    if min(leads) < 0:
        raise ValueError("leads must not be negative")
    b, n, h, w = frames.shape
    most = max(leads)
    if disp is None:
        disp = displacements(velocity, most, window=window)
    elif disp.shape[1] < most:
        raise ValueError(f"{disp.shape[1]} displacement steps for a lead of {most}")
    oh, ow = disp.shape[-2:]
    # lead 0 is the identity: a zero displacement
    disp = torch.cat([velocity.new_zeros(b, 1, 2, oh, ow).float(), disp[:, :most].float()], 1)[:, leads]
    fields = frames.unsqueeze(2) if valid is None else torch.stack([frames, valid.to(frames.dtype)], 2)
    # lead 0 exactly unchanged (the bilinear round trip through normalised coordinates is not bit-exact)
    warped = {j: warp(fields[:, j], disp[:, j], mode, window) for j, k in enumerate(leads) if k != 0}
    dtype = next(iter(warped.values())).dtype if warped else frames.dtype
    y0, x0 = (0, 0) if window is None else (int(window[0]), int(window[1]))
    out = torch.stack([warped[j] if j in warped else fields[:, j, :, y0 : y0 + oh, x0 : x0 + ow].to(dtype)
                       for j in range(n)], 1)
    source = inside(disp, window=window, grid=(h, w))
    if valid is not None:
        source = source & (out[:, :, 1] > 0.999)  # every pixel interpolated had data (up to rounding)
    return out[:, :, 0], source


@contextlib.contextmanager
def _full_precision(t: torch.Tensor):
    """Trajectories are integrated in float32 even inside a bf16 autocast region."""
    with torch.autocast(device_type=t.device.type, enabled=False):
        yield
