"""Tests of the synthetic radar generator and its netCDF output."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from nowcast.errors import NowcastError
from nowcast.synthetic import generate, to_dataset, write_netcdf

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"


@pytest.fixture(scope="module")
def default_run():
    return generate(return_motion=True)


def test_deterministic_for_a_seed():
    a, ma = generate(n_frames=6, height=48, width=64, seed=5, return_motion=True)
    b, mb = generate(n_frames=6, height=48, width=64, seed=5, return_motion=True)
    assert a.values.tobytes() == b.values.tobytes()
    assert np.array_equal(ma.u, mb.u) and np.array_equal(ma.v, mb.v)


def test_different_seeds_differ():
    a = generate(n_frames=4, height=48, width=48, seed=1)
    b = generate(n_frames=4, height=48, width=48, seed=2)
    assert not np.array_equal(a.values, b.values)


def test_layout_coordinates_and_attributes(default_run):
    da, motion = default_run
    assert da.name == "reflectivity" and da.dims == ("time", "y", "x")
    assert da.shape == (24, 128, 128) and da.dtype == np.float32
    assert da.attrs["units"] == "dBZ" and da.attrs["grid_mapping"] == "crs"
    assert da["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    x, y = da["x"].values, da["y"].values
    assert np.allclose(np.diff(x), 1000.0) and np.allclose(np.diff(y), -1000.0)  # north at row 0
    assert da["x"].attrs["standard_name"] == "projection_x_coordinate" and da["x"].attrs["units"] == "m"
    assert da["y"].attrs["standard_name"] == "projection_y_coordinate" and da["y"].attrs["units"] == "m"
    t = da["time"].values
    assert t.dtype == np.dtype("datetime64[ns]")
    assert t[0] == np.datetime64("2026-01-01T12:00")
    assert np.all(np.diff(t) == np.timedelta64(5, "m"))
    assert motion.u.shape == (23, 128, 128) and motion.v.shape == (23, 128, 128)


def test_reflectivity_distribution(default_run):
    a = default_run[0].values
    assert not np.isnan(a).any()
    assert a.min() == -10.0 and a.max() <= 70.0
    floor = np.mean(a == -10.0)
    assert 0.4 < floor < 0.8, floor  # mostly no echo
    echo = a[a > -10.0]
    assert np.mean((echo >= 15) & (echo < 35)) > 0.5  # stratiform rain dominates the echoes
    strong = np.mean(a >= 50.0)
    assert 0.0005 < strong < 0.01, strong  # a few tenths of a percent of convective cores
    assert np.all((a == -10.0) | (a >= 5.0))  # nothing between the floor and the detection limit


def _best_integer_shift(prev, nxt, search=4, margin=8):
    best, arg = -np.inf, None
    core = nxt[margin:-margin, margin:-margin]
    for dr in range(-search, search + 1):
        for dc in range(-search, search + 1):
            moved = np.roll(prev, (dr, dc), axis=(0, 1))[margin:-margin, margin:-margin]
            c = np.corrcoef(moved.ravel(), core.ravel())[0, 1]
            if c > best:
                best, arg = c, (dc, dr)
    return arg


def test_uniform_motion_matches_the_known_shift():
    u, v = 2.0, -1.0  # 2 columns east and 1 row north (up) per step
    heading = math.degrees(math.atan2(u, -v))
    da, motion = generate(n_frames=5, height=64, width=64, seed=3, motion="uniform", speed=math.hypot(u, v), heading_deg=heading, return_motion=True)
    assert np.allclose(motion.u, u, atol=1e-6) and np.allclose(motion.v, v, atol=1e-6)
    frames = da.values
    for k in range(len(frames) - 1):
        assert _best_integer_shift(frames[k], frames[k + 1]) == (2, -1)


def test_uniform_default_heading_moves_right_and_up():
    da, motion = generate(n_frames=3, height=48, width=48, motion="uniform", return_motion=True)
    mu, mv = motion.mean
    assert mu == pytest.approx(1.5 * math.sin(math.radians(60)))
    assert mv == pytest.approx(-1.5 * math.cos(math.radians(60)))


def _rotate_back(frame, theta):
    """Frame sampled at positions rotated by -theta (CCW on a north-up image for theta > 0)."""
    h, w = frame.shape
    r, c = np.mgrid[0:h, 0:w].astype(float)
    x, y = c - (w - 1) / 2, -(r - (h - 1) / 2)  # map axes: x east, y north
    xs = x * math.cos(theta) + y * math.sin(theta)
    ys = -x * math.sin(theta) + y * math.cos(theta)
    return ndimage.map_coordinates(frame, [-(ys) + (h - 1) / 2, xs + (w - 1) / 2], order=1, mode="nearest")


def test_rotation_is_counterclockwise_with_the_given_speed():
    deg = 4.0
    da, motion = generate(n_frames=3, height=96, width=96, seed=7, motion="rotation", rotation_deg_per_step=deg, evolve=False, return_motion=True)
    f0, f1 = da.values[0].astype(float), da.values[1].astype(float)
    h, w = f0.shape
    r, c = np.mgrid[0:h, 0:w]
    disc = np.hypot(r - (h - 1) / 2, c - (w - 1) / 2) < 40
    errors = {a: np.mean((_rotate_back(f0, math.radians(a))[disc] - f1[disc]) ** 2) for a in range(-8, 9)}
    best = min(errors, key=errors.get)
    assert best == pytest.approx(deg, abs=1)
    # The recorded motion: east of the centre moves north (towards row 0, v < 0), north of it moves west.
    assert motion.v[0][48, 80] < 0 and motion.u[0][10, 48] < 0


def test_mixed_motion_varies_and_the_field_follows_it(default_run):
    da, motion = default_run
    assert motion.u[0].std() > 0.1 and motion.v[0].std() > 0.1  # varies in space
    first = math.atan2(motion.u[0].mean(), motion.v[0].mean())
    last = math.atan2(motion.u[-1].mean(), motion.v[-1].mean())
    assert abs(math.degrees(math.remainder(last - first, 2 * math.pi))) > 10  # and in time
    # Warping frame k by the recorded motion predicts frame k + 1 far better than persistence does.
    h, w = da.shape[1:]
    r, c = np.mgrid[0:h, 0:w].astype(float)
    inner = (slice(10, -10), slice(10, -10))
    for k in (3, 12, 20):
        prev, nxt = da.values[k].astype(float), da.values[k + 1].astype(float)
        warped = ndimage.map_coordinates(prev, [r - motion.v[k], c - motion.u[k]], order=1, mode="nearest")
        mse_warp = np.mean((warped[inner] - nxt[inner]) ** 2)
        mse_pers = np.mean((prev[inner] - nxt[inner]) ** 2)
        assert mse_warp < 0.5 * mse_pers, (k, mse_warp, mse_pers)


def test_bad_arguments_are_user_errors():
    with pytest.raises(NowcastError):
        generate(motion="swirl")
    with pytest.raises(NowcastError):
        generate(n_frames=0)


def test_netcdf_round_trip(tmp_path):
    da = generate(n_frames=4, height=32, width=40, seed=11, step_minutes=2.5)
    da[1, 3:6, 4:9] = np.nan  # no data must survive as NaN
    path = tmp_path / "radar.nc"
    assert write_netcdf(da, path) == path
    with xr.open_dataset(path) as ds:
        back = ds["reflectivity"].load()
        enc = back.encoding
        assert enc["dtype"] == np.dtype("int16") and enc["scale_factor"] == pytest.approx(0.01)
        assert enc["_FillValue"] == -32768
        units = ds["time"].encoding["units"].replace("T", " ")
        assert units == "minutes since 2026-01-01 12:00:00"
        assert np.array_equal(ds["time"].values, da["time"].values)
        assert np.array_equal(np.isnan(back.values), np.isnan(da.values))
        ok = ~np.isnan(da.values)
        assert np.max(np.abs(back.values[ok] - da.values[ok])) <= 0.005 + 1e-4
        assert np.array_equal(ds["x"].values, da["x"].values) and np.array_equal(ds["y"].values, da["y"].values)
        assert back.attrs["units"] == "dBZ" and back.attrs["grid_mapping"] == "crs"
        assert back.attrs["standard_name"] == "equivalent_reflectivity_factor"
        assert ds["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert "seed=11" in ds.attrs["source"] and "nowcast synthetic generator" in ds.attrs["source"]
        assert ds.attrs["title"] and ds.attrs["history"]


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    da = generate(n_frames=2, height=16, width=16)
    path = tmp_path / "r.nc"
    write_netcdf(da, path)
    with pytest.raises(NowcastError):
        write_netcdf(da, path)
    write_netcdf(da, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]  # no temporary files left behind
    with pytest.raises(NowcastError):
        write_netcdf(da, tmp_path / "missing" / "r.nc")


def test_to_dataset_moves_file_attributes_to_global():
    ds = to_dataset(generate(n_frames=2, height=16, width=16, seed=4))
    assert "crs" in ds.data_vars and "source" not in ds["reflectivity"].attrs
    assert ds.attrs["source"].endswith("seed=4")


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample_data/radar.nc not made yet")
def test_shipped_sample_is_the_default_generator_output(default_run):
    assert SAMPLE.stat().st_size < 2 * 1024 * 1024
    with xr.open_dataset(SAMPLE) as ds:
        back = ds["reflectivity"].values
        assert np.max(np.abs(back - default_run[0].values)) <= 0.005 + 1e-4
        assert np.array_equal(ds["time"].values, default_run[0]["time"].values)
