"""Synthetic radar-like reflectivity sequences with motion that varies in space and time.

The generator builds every frame from "material" coordinates: for each pixel of frame k it traces the air
parcel backwards through the wind, step by step, to where it was at frame 0 (semi-Lagrangian backward
trajectories, midpoint rule), and then samples the precipitation patterns there with
``scipy.ndimage.map_coordinates``.  Sampling once from frame 0's coordinates instead of re-sampling the
previous frame avoids the blur that repeated interpolation would add, while the echoes still move exactly
with the wind, including rotation and deformation.

Precipitation is made of

* a stratiform field: power-law filtered noise (large and small scales, each slowly evolving in time by
  mixing two independent noise fields), thresholded so that most of the domain has no echo and the rain
  is mostly 15-35 dBZ;
* convective cells: anisotropic Gaussian cells in linear Z with a lifecycle (grow, mature, decay), their
  own slow turning, and the deformation the flow imposes; the strongest give cores above 50 dBZ.

Directions (the same everywhere in this module):

* columns increase to the east (+x); rows increase to the south, so row 0 is the northern edge and the
  ``y`` coordinate *decreases* with the row index, as in most radar composites;
* motion is given in pixels per time step as ``u`` (along +column, east) and ``v`` (along +row, south):
  a positive ``v`` moves echoes down the image, i.e. southwards.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import ndimage

from .version import __version__
from .errors import NowcastError
from .netcdf import minutes_since, packed_dbz, write_dataset
from .units import DBZ_CEIL, DBZ_FLOOR

MOTIONS = ("mixed", "uniform", "rotation")
DEFAULT_START = "2026-01-01T12:00"
MIN_ECHO_DBZ = 5.0  # weaker echoes are below a typical radar's detection and become "no echo"

# A neutral projection centre for the synthetic composite (the data are not from anywhere real).
_CRS_ATTRS = {
    "grid_mapping_name": "azimuthal_equidistant",
    "longitude_of_projection_origin": 10.0,
    "latitude_of_projection_origin": 50.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "earth_radius": 6371000.0,
    "long_name": "synthetic radar composite projection",
}

# Attributes of the DataArray that describe the file rather than the variable: to_dataset moves them to
# the global attributes.
_GLOBAL_KEYS = ("title", "institution", "source", "history", "comment", "references")


@dataclass
class TrueMotion:
    """The motion the generator used, per step, in pixels per step.

    ``u[s]`` and ``v[s]`` (shape (n_frames - 1, height, width)) are the displacement over step s (frame s to
    frame s + 1) of the air that arrives at each pixel in frame s + 1: ``u`` along +column (east), ``v``
    along +row (south).  So ``frame[s + 1][r, c] ~ frame[s](r - v[s][r, c], c - u[s][r, c])``, apart from
    the growth and decay of the echoes.
    """

    kind: str
    u: np.ndarray
    v: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def mean(self) -> tuple[float, float]:
        """Domain- and time-mean (u, v) in pixels per step."""
        return float(self.u.mean()), float(self.v.mean())


# ---------------------------------------------------------------------------------------------------------
# wind fields


class _Wind:
    """Velocity in pixels per step at time t (in steps) and positions (col, row)."""

    def __call__(self, t: float, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class _UniformWind(_Wind):
    def __init__(self, u: float, v: float):
        self.u, self.v = float(u), float(v)

    def __call__(self, t, col, row):
        return np.full_like(col, self.u), np.full_like(row, self.v)


class _RotationWind(_Wind):
    """Solid-body rotation about (c0, r0); omega > 0 is counterclockwise on a north-up map."""

    def __init__(self, omega: float, c0: float, r0: float):
        self.omega, self.c0, self.r0 = float(omega), float(c0), float(r0)

    def __call__(self, t, col, row):
        # In map axes (x east, y north) CCW rotation is (u, w) = omega * (-y, x); rows point south (y = -row).
        return self.omega * (row - self.r0), -self.omega * (col - self.c0)


class _MixedWind(_Wind):
    """Slowly turning background drift + a drifting vortex of varying strength + weak deformation."""

    def __init__(self, rng: np.random.Generator, speed: float, heading_deg: float, n_steps: int, height: int, width: int):
        T = max(n_steps, 1)
        self.T = T
        self.speed = speed
        self.heading0 = np.deg2rad(heading_deg)
        self.turn = np.deg2rad(rng.uniform(25.0, 45.0)) * rng.choice([-1.0, 1.0])
        self.speed_wobble = rng.uniform(0.1, 0.2)
        self.speed_phase = rng.uniform(0, 2 * np.pi)
        size = min(height, width)
        self.c0 = width / 2 + rng.uniform(-0.2, 0.2) * width
        self.r0 = height / 2 + rng.uniform(-0.2, 0.2) * height
        ub, vb = self._background(0.5 * T)
        drift = rng.uniform(0.4, 0.8)  # the vortex travels slower than the steering wind
        self.vc, self.vr = drift * ub, drift * vb
        self.radius = rng.uniform(0.2, 0.3) * size
        self.vmax = max(speed, 0.5) * rng.uniform(0.6, 0.9)
        self.sense = 1.0 if rng.random() < 0.7 else -1.0  # mostly cyclonic (CCW in the northern hemisphere)
        self.period = rng.uniform(1.5, 3.0) * T
        self.phase = rng.uniform(0, 2 * np.pi)
        self.strain = rng.uniform(0.002, 0.005) * rng.choice([-1.0, 1.0])
        self.strain_angle = rng.uniform(0, np.pi)
        self.h, self.w = height, width

    def _background(self, t):
        s = self.speed * (1.0 + self.speed_wobble * np.sin(2 * np.pi * t / self.T + self.speed_phase))
        h = self.heading0 + self.turn * t / self.T
        return s * np.sin(h), -s * np.cos(h)  # heading is clockwise from north; rows point south

    def __call__(self, t, col, row):
        ub, vb = self._background(t)
        u = np.full_like(col, ub)
        v = np.full_like(row, vb)
        # Vortex: tangential speed peaks (vmax) at the radius and fades outside it.
        strength = self.vmax * (0.65 + 0.35 * np.sin(2 * np.pi * t / self.period + self.phase))
        dc = col - (self.c0 + self.vc * t)
        dr = row - (self.r0 + self.vr * t)
        r = np.hypot(dc, dr) / self.radius
        vt = strength * np.exp(0.5 * (1.0 - r * r))  # = strength * profile / r, times r below
        k = self.sense * vt / self.radius
        u += k * dr
        v -= k * dc
        # Weak pure strain about the domain centre: stretches cells along one axis.
        xc = col - self.w / 2
        yc = row - self.h / 2
        ca, sa = np.cos(2 * self.strain_angle), np.sin(2 * self.strain_angle)
        u += self.strain * (ca * xc + sa * yc)
        v += self.strain * (sa * xc - ca * yc)
        return u, v


def _departure(wind: _Wind, t_mid: float, col, row):
    """Where the air arriving at (col, row) at the end of the step was at its start (midpoint rule)."""
    u1, v1 = wind(t_mid, col, row)
    u2, v2 = wind(t_mid, col - 0.5 * u1, row - 0.5 * v1)
    return col - u2, row - v2


# ---------------------------------------------------------------------------------------------------------
# precipitation patterns


def _powerlaw_noise(rng: np.random.Generator, shape, beta: float, outer: float, inner: float = 0.0) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise with power spectrum ~ k^-beta between the outer and inner scales."""
    ny, nx = shape
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    k0 = 1.0 / outer  # flatten the spectrum above the outer scale so one huge mode does not dominate
    amp = np.power(k * k + k0 * k0, -beta / 4.0)
    if inner > 0:
        amp *= np.exp(-((k * inner) ** 2))
    amp[0, 0] = 0.0
    out = np.fft.irfft2(np.fft.rfft2(white) * amp, s=shape)
    out -= out.mean()
    std = out.std()
    return out / std if std > 0 else out


@dataclass
class _Cells:
    col: np.ndarray  # centre in frame-0 (material) coordinates
    row: np.ndarray
    birth: np.ndarray  # in steps
    life: np.ndarray
    peak: np.ndarray  # peak dBZ at maturity
    sigma: np.ndarray  # major-axis standard deviation (pixels), of Z
    aspect: np.ndarray
    angle: np.ndarray
    spin: np.ndarray  # own turning of the cell, radians per step


def _make_cells(rng, bounds, n_frames, height, width, envelope_at) -> _Cells:
    c_lo, c_hi, r_lo, r_hi = bounds
    area_ratio = (c_hi - c_lo) * (r_hi - r_lo) / float(height * width)
    mean_life = 14.0
    alive_in_domain = 6.0 * height * width / (128.0 * 128.0)  # ~6 cells alive in a 128 x 128 domain
    n = int(rng.poisson(alive_in_domain * area_ratio * (n_frames + mean_life) / mean_life))
    # Convection sits mostly inside the rain areas: keep candidates where the large-scale field is high.
    cand = 6 * n + 10
    cc = rng.uniform(c_lo, c_hi, cand)
    rr = rng.uniform(r_lo, r_hi, cand)
    score = envelope_at(cc, rr) + 0.6 * rng.standard_normal(cand)
    order = np.argsort(-score)[:n]
    cc, rr = cc[order], rr[order]
    life = rng.uniform(8.0, 22.0, n)
    return _Cells(
        col=cc,
        row=rr,
        birth=rng.uniform(-life, n_frames - 1.0),
        life=life,
        peak=40.0 + 22.0 * rng.beta(2.0, 3.0, n),
        sigma=rng.uniform(2.0, 4.5, n),
        aspect=rng.uniform(1.0, 2.5, n),
        angle=rng.uniform(0.0, np.pi, n),
        spin=np.deg2rad(rng.uniform(-3.0, 3.0, n)),
    )


def _cells_z(cells: _Cells, t: float, mc: np.ndarray, mr: np.ndarray) -> np.ndarray:
    """Linear reflectivity Z (mm^6/m^3) of all cells alive at time t, at material coordinates (mc, mr)."""
    z = np.zeros(mc.shape, dtype=np.float64)
    tau = (t - cells.birth) / cells.life
    for i in np.flatnonzero((tau > 0.0) & (tau < 1.0)):
        env = np.sin(np.pi * tau[i]) ** 0.8  # grow, mature, decay
        s_major = cells.sigma[i] * (0.5 + 0.5 * env)
        s_minor = s_major / cells.aspect[i]
        a = cells.angle[i] + cells.spin[i] * t
        dc = mc - cells.col[i]
        dr = mr - cells.row[i]
        # Cheap cut-off: beyond 5 sigma the cell contributes nothing visible.
        reach = 5.0 * s_major
        if not ((np.abs(dc) < reach) & (np.abs(dr) < reach)).any():
            continue
        p = dc * np.cos(a) + dr * np.sin(a)
        q = -dc * np.sin(a) + dr * np.cos(a)
        z += 10.0 ** (cells.peak[i] / 10.0) * env**2 * np.exp(-0.5 * ((p / s_major) ** 2 + (q / s_minor) ** 2))
    return z


def _stratiform_dbz(s: np.ndarray, threshold: float) -> np.ndarray:
    """Map a unit-variance field to dBZ: no rain below the threshold, 5 dBZ at the edge saturating near 35."""
    excess = s - threshold
    dbz = 5.0 + 30.0 * (1.0 - np.exp(-np.maximum(excess, 0.0) / 0.7))
    return np.where(excess > 0, dbz, -np.inf)


@dataclass
class _RainNoise:
    """The stratiform rain's noise on a grid covering every material position: two large-scale fields and two
    small-scale ones, each pair mixed by a phase that turns at its rate (radians per step), so rain evolves."""

    large: list
    small: list
    c_lo: int  # material coordinates of the grid's first column and row
    r_lo: int
    large_rate: float
    small_rate: float

    def sample(self, grid, mc, mr):
        return ndimage.map_coordinates(grid, [mr - self.r_lo, mc - self.c_lo], order=3, mode="nearest")

    def unit_field(self, k: int, mc, mr) -> np.ndarray:
        """The unit-variance rain field at step k, at material coordinates (mc, mr)."""
        a, b = self.large_rate * k, self.small_rate * k
        lg = np.cos(a) * self.sample(self.large[0], mc, mr) + np.sin(a) * self.sample(self.large[1], mc, mr)
        sm = np.cos(b) * self.sample(self.small[0], mc, mr) + np.sin(b) * self.sample(self.small[1], mc, mr)
        return (0.85 * lg + 0.45 * sm) / np.hypot(0.85, 0.45)


def _rain_noise(rng, mat_c, mat_r, size: int, evolve: bool) -> _RainNoise:
    pad = 8  # a margin for the interpolation
    c_lo = int(np.floor(mat_c.min())) - pad
    r_lo = int(np.floor(mat_r.min())) - pad
    shape = (int(np.ceil(mat_r.max())) + pad - r_lo + 1, int(np.ceil(mat_c.max())) + pad - c_lo + 1)
    large = [_powerlaw_noise(rng, shape, beta=3.2, outer=1.0 * size) for _ in range(2)]
    small = [_powerlaw_noise(rng, shape, beta=2.4, outer=0.15 * size, inner=4.0) for _ in range(2)]
    # large scales live for hours, small ones for tens of minutes
    return _RainNoise(large, small, c_lo, r_lo, 0.03 if evolve else 0.0, 0.12 if evolve else 0.0)


def _frame_dbz(noise: _RainNoise, threshold: float, cells: _Cells, k: int, mc, mr) -> np.ndarray:
    """Frame k in dBZ (float32): stratiform rain and convective cells added as Z, below MIN_ECHO_DBZ the floor."""
    strat = _stratiform_dbz(noise.unit_field(k, mc, mr), threshold)
    z = np.where(np.isfinite(strat), 10.0 ** (np.where(np.isfinite(strat), strat, 0.0) / 10.0), 0.0)
    z = z + _cells_z(cells, float(k), mc, mr)
    with np.errstate(divide="ignore"):
        dbz = 10.0 * np.log10(z)
    dbz = np.where(dbz < MIN_ECHO_DBZ, DBZ_FLOOR, np.minimum(dbz, DBZ_CEIL))
    return dbz.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# public API


def generate(
    n_frames: int = 24,
    height: int = 128,
    width: int = 128,
    seed: int = 2026,
    step_minutes: float = 5.0,
    pixel_km: float = 1.0,
    motion: str = "mixed",
    speed: float = 1.5,
    heading_deg: float = 60.0,
    rotation_deg_per_step: float = 3.0,
    start=DEFAULT_START,
    rain_fraction: float = 0.4,
    evolve: bool = True,
    return_motion: bool = False,
):
    """Make a synthetic radar reflectivity sequence (dBZ, float32) on (time, y, x).

    Defaults make the shipped ``sample_data/radar.nc``.

    motion:
        ``"mixed"``: a background drift of about ``speed`` pixels per step heading ``heading_deg`` (degrees
        clockwise from north: 0 moves echoes north/up, 90 east/right) that turns by 25-45 degrees over the
        sequence and varies in speed, plus a vortex (mostly counterclockwise) whose centre drifts and whose
        strength varies in time, plus a weak deformation field.  Randomised from ``seed``.
        ``"uniform"``: everything moves by the constant (u, v) = (speed * sin(heading), -speed * cos(heading))
        pixels per step, u along +column (east), v along +row (south).  With the default heading 60 the
        echoes move right and up the image: columns increase by 1.30 per step and rows *decrease* by 0.75.
        ``"rotation"``: solid-body rotation about the domain centre (column (width-1)/2, row (height-1)/2)
        by ``rotation_deg_per_step`` degrees per step, counterclockwise as seen on a north-up image when
        positive (an echo east of the centre moves north, i.e. to a smaller row).
    evolve:
        let the echoes grow and decay (cell lifecycles, evolving stratiform rain); False freezes them, so
        that the sequence is pure advection.
    return_motion:
        also return the :class:`TrueMotion` used (pixels per step, u along +column, v along +row).

    The result is deterministic for a seed.  Its ``x`` and ``y`` are projection coordinates in metres of
    the pixel centres (``y`` decreasing with the row: north at row 0) with a CF grid mapping in ``crs``.
    """
    _check_arguments(motion, n_frames, height, width, step_minutes, pixel_km)
    rng = np.random.default_rng(seed)
    wind, params = _choose_wind(rng, motion, speed, heading_deg, rotation_deg_per_step, n_frames, height, width)
    mat_c, mat_r, du, dv = _trajectories(wind, n_frames, height, width)
    noise = _rain_noise(rng, mat_c, mat_r, min(height, width), evolve)
    threshold = float(_normal_quantile(1.0 - rain_fraction))
    cells = _make_cells(
        rng,
        (mat_c.min(), mat_c.max(), mat_r.min(), mat_r.max()),
        n_frames,
        height,
        width,
        lambda cc, rr: noise.sample(noise.large[0], cc, rr),
    )
    if not evolve:  # frozen cells: mature for the whole sequence, no own turning
        cells.life[:] = 1e9
        cells.birth[:] = -0.5e9
        cells.spin[:] = 0.0

    frames = np.empty((n_frames, height, width), dtype=np.float32)
    for k in range(n_frames):
        frames[k] = _frame_dbz(noise, threshold, cells, k, mat_c[k], mat_r[k])

    da = _wrap(frames, seed=seed, step_minutes=step_minutes, pixel_km=pixel_km, start=start)
    da.attrs["comment"] = (
        f"synthetic: motion={motion} n_frames={n_frames} size={height}x{width} step_minutes={step_minutes:g} "
        f"pixel_km={pixel_km:g} seed={seed}"
    )
    if return_motion:
        return da, TrueMotion(kind=motion, u=du, v=dv, params=params)
    return da


def _check_arguments(motion, n_frames, height, width, step_minutes, pixel_km) -> None:
    if motion not in MOTIONS:
        raise NowcastError(f"unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}")
    if n_frames < 1 or height < 8 or width < 8:
        raise NowcastError(f"need at least 1 frame and 8 x 8 pixels, got {n_frames} x {height} x {width}")
    if step_minutes <= 0 or pixel_km <= 0:
        raise NowcastError("step_minutes and pixel_km must be positive")


def _choose_wind(rng, motion, speed, heading_deg, rotation_deg_per_step, n_frames, height, width):
    """The wind of `motion` and the parameters TrueMotion reports for it (the mixed wind draws from rng)."""
    if motion == "uniform":
        h = np.deg2rad(heading_deg)
        wind: _Wind = _UniformWind(speed * np.sin(h), -speed * np.cos(h))
        return wind, {"u": wind.u, "v": wind.v}
    if motion == "rotation":
        omega = np.deg2rad(rotation_deg_per_step)
        wind = _RotationWind(omega, (width - 1) / 2.0, (height - 1) / 2.0)
        return wind, {"omega_rad_per_step": omega, "centre_col": wind.c0, "centre_row": wind.r0,
                      "sense": "counterclockwise" if omega >= 0 else "clockwise"}
    wind = _MixedWind(rng, speed, heading_deg, n_frames - 1, height, width)
    return wind, {"speed": speed, "heading_deg": heading_deg,
                  "vortex_sense": "counterclockwise" if wind.sense > 0 else "clockwise"}


def _trajectories(wind: _Wind, n_frames: int, height: int, width: int):
    """Backward trajectories: material (frame-0) columns and rows of every pixel of every frame, and the
    displacement of each step (u along +column, v along +row) that TrueMotion reports."""
    row0, col0 = np.mgrid[0:height, 0:width].astype(np.float64)
    mat_c = np.empty((n_frames, height, width))
    mat_r = np.empty((n_frames, height, width))
    du = np.empty((max(n_frames - 1, 0), height, width), dtype=np.float32)
    dv = np.empty_like(du)
    for k in range(n_frames):
        c, r = col0, row0
        for j in range(k, 0, -1):
            c, r = _departure(wind, j - 0.5, c, r)
            if j == k:
                du[k - 1] = col0 - c
                dv[k - 1] = row0 - r
        mat_c[k], mat_r[k] = c, r
    return mat_c, mat_r, du, dv


def _normal_quantile(p: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(min(max(p, 1e-6), 1 - 1e-6)))


def _wrap(frames: np.ndarray, seed, step_minutes: float, pixel_km: float, start) -> xr.DataArray:
    n, height, width = frames.shape
    t0 = np.datetime64(start, "ns")
    step = np.timedelta64(int(round(step_minutes * 60e9)), "ns")
    times = t0 + step * np.arange(n)
    dx = pixel_km * 1000.0
    x = (np.arange(width) - (width - 1) / 2.0) * dx
    y = ((height - 1) / 2.0 - np.arange(height)) * dx  # decreasing: row 0 is the northern edge
    crs = xr.DataArray(np.int32(0), attrs=dict(_CRS_ATTRS))
    return xr.DataArray(
        frames,
        dims=("time", "y", "x"),
        coords={
            "time": ("time", times, {"standard_name": "time", "long_name": "valid time", "axis": "T"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection", "units": "m", "axis": "Y"}),
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection", "units": "m", "axis": "X"}),
            "crs": crs,
        },
        name="reflectivity",
        attrs={
            "units": "dBZ",
            "standard_name": "equivalent_reflectivity_factor",
            "long_name": "radar reflectivity (synthetic)",
            "grid_mapping": "crs",
            "title": "Synthetic radar reflectivity",
            "institution": "nowcast (synthetic data, not a real radar)",
            "source": f"nowcast synthetic generator {__version__} seed={seed}",
        },
    )


def to_dataset(da: xr.DataArray) -> xr.Dataset:
    """A CF-1.8 Dataset for the sequence: ``reflectivity`` + grid mapping variable ``crs`` + global attributes.

    File-level attributes of the DataArray (title, institution, source, history, comment) become global
    attributes; the ``crs`` coordinate becomes a data variable (as CF grid mappings are).
    """
    da = da.copy()
    gattrs = {k: da.attrs.pop(k) for k in _GLOBAL_KEYS if k in da.attrs}
    name = da.name or "reflectivity"
    ds = da.to_dataset(name=name)
    if "crs" in ds.coords:
        ds = ds.reset_coords("crs")
    gattrs.setdefault("title", "Radar reflectivity")
    gattrs.setdefault("source", f"nowcast {__version__}")
    gattrs["Conventions"] = "CF-1.8"
    ds.attrs = gattrs
    return ds


def write_netcdf(da: xr.DataArray, path, overwrite: bool = False) -> Path:
    """Write the sequence as CF-1.8 netCDF-4, atomically (the encoding policy of `nowcast.netcdf`).

    Reflectivity is packed as int16 in steps of 0.01 dBZ (NaN -> _FillValue -32768), zlib-compressed;
    time is stored as whole "minutes since" the first frame where possible.
    """
    ds = to_dataset(da)
    name = da.name or "reflectivity"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp} written by nowcast {__version__} (nowcast.synthetic.write_netcdf)"
    ds.attrs["history"] = f"{ds.attrs['history']}\n{line}" if ds.attrs.get("history") else line
    ds[name] = packed_dbz(ds[name])
    times = ds["time"].values
    minutes = (times - times[0]) / np.timedelta64(1, "m")
    whole = np.allclose(minutes, np.round(minutes))
    ds["time"].encoding = minutes_since(times[0], dtype="int32" if whole else "float64")
    return write_dataset(ds, path, overwrite=overwrite)
