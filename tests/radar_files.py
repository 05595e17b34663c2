"""Small hand-made radar netCDF files for tests (shared by several test modules)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

SHARED_RADAR = Path(__file__).resolve().parents[2] / "shared" / "radar"
# Tests on the team's radar archive (real radar from the pysteps example data, converted to CF netCDF) skip
# when it is missing, as on a fresh clone; CI sets this to 1 so that a missing archive fails instead of
# skipping silently.
REQUIRE_RADAR = "NOWCAST_REQUIRE_RADAR"


def needs_shared_radar(path: Path = SHARED_RADAR):
    """Decorator for a test that reads `path` (a file or folder of the radar archive).

    Present: the test runs. Missing: the test is skipped with a one-line reason, or fails when
    NOWCAST_REQUIRE_RADAR=1 (CI).
    """
    path = Path(path)
    if path.exists():
        return lambda test: test
    which = "" if path == SHARED_RADAR else f" ({path.name})"
    what = f"needs the pysteps example radar data{which}, which is not part of the repository"
    if os.environ.get(REQUIRE_RADAR) != "1":
        return pytest.mark.skip(reason=what)

    def failing(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            pytest.fail(f"{what}; {REQUIRE_RADAR}=1 requires it")
        return run

    return failing


def times(n, step_min=5, start="2026-06-01T12:00"):
    return np.datetime64(start) + np.arange(n) * np.timedelta64(step_min, "m")


def write_nc(path, values, units="dBZ", time=None, name="reflectivity", dims=("time", "y", "x"),
             extra_vars=None, attrs=None, encoding=None, with_crs=True):
    """Write `values` as a CF-like radar file; returns the path."""
    values = np.asarray(values)
    coords = {}
    shape = dict(zip(dims, values.shape))
    if "time" in dims:
        coords["time"] = time if time is not None else times(shape["time"])
    if "y" in dims:
        coords["y"] = ("y", 1000.0 * np.arange(shape["y"])[::-1], {"units": "m", "standard_name": "projection_y_coordinate"})
    if "x" in dims:
        coords["x"] = ("x", 1000.0 * np.arange(shape["x"]), {"units": "m", "standard_name": "projection_x_coordinate"})
    var_attrs = dict(attrs or {})
    if units is not None:
        var_attrs["units"] = units
    if with_crs:
        var_attrs["grid_mapping"] = "crs"
    ds = xr.Dataset({name: (dims, values, var_attrs)}, coords=coords)
    if with_crs:
        ds["crs"] = xr.DataArray(np.int32(0), attrs={"grid_mapping_name": "azimuthal_equidistant",
                                                     "latitude_of_projection_origin": 60.0,
                                                     "longitude_of_projection_origin": 25.0})
    for k, v in (extra_vars or {}).items():
        ds[k] = v
    ds.to_netcdf(path, encoding=encoding or {})
    return Path(path)


def storm(n=8, h=40, w=48, dx=1, peak=55.0, seed=0):
    """A Gaussian storm moving dx pixels per frame to the east over a -10 dBZ background."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for k in range(n):
        cx, cy = 12 + dx * k, h / 2
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2
        frames.append(-10 + (peak + 10) * np.exp(-r2 / 40.0))
    rng = np.random.default_rng(seed)
    return (np.array(frames) + rng.normal(0, 0.1, (n, h, w))).astype(np.float32)
