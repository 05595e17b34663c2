"""Trend vectors: the offset -> displacement conversion, its sign against the real warp, the CLI, and
the direction of a briefly trained model's trend on synthetic uniform and rotating motion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from nowcast import trend
from nowcast.checkpoint import save_checkpoint
from nowcast.cli import main as cli_main
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.nn import ModelConfig, build_model
from nowcast.nn.motiongru import deform_warp
from nowcast.synthetic import generate

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "radar.nc"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "trend-tiny.safetensors"
TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=4, input_frames=5, output_frames=3)
BIAS_DY, BIAS_DX = 0.3, -0.2  # conv_z biases of the "biased" model below


def _offsets(dy, dx, h=5, w=4):
    """(18, h, w) with the same (dy, dx) on every tap (channel 2k = dy, 2k + 1 = dx)."""
    m = np.empty((18, h, w))
    m[0::2], m[1::2] = dy, dx
    return m


# ------------------------------------------------------------------------------------ pure conversion


def test_constant_offset_by_hand():
    # sampling offset (dy, dx) = (+1, -2) encoded pixels: the content moves by (-1, +2) encoded pixels,
    # one encoded pixel = patch (4) x stride (2) = 8 radar pixels
    d_col, d_row = trend.motion_to_vectors(_offsets(1.0, -2.0), patch=4, stride=2)
    assert d_col.shape == d_row.shape == (5, 4)
    np.testing.assert_allclose(d_row, -1 * 4 * 2)
    np.testing.assert_allclose(d_col, +2 * 4 * 2)


def test_tap_mean_and_crop():
    m = np.zeros((18, 5, 4))
    m[0] = 9.0  # tap 0 dy only: the mean over the 9 taps is 1
    m[2 * 4 + 1] = -4.5  # centre tap dx: mean -0.5
    d_col, d_row = trend.motion_to_vectors(m, patch=2, stride=2, height=13, width=7)
    # a 13 x 7 frame needs ceil(13/4) x ceil(7/4) = 4 x 2 cells of the (padded) 5 x 4 grid
    assert d_row.shape == (4, 2)
    np.testing.assert_allclose(d_row, -1.0 * 4)
    np.testing.assert_allclose(d_col, 0.5 * 4)
    with pytest.raises(NowcastError, match="too small"):
        trend.motion_to_vectors(m, patch=2, stride=2, height=40, width=7)
    with pytest.raises(NowcastError, match="18"):
        trend.motion_to_vectors(np.zeros((9, 3, 3)), patch=2, stride=2)


def test_cell_centres_partial_last_cell():
    np.testing.assert_allclose(trend.cell_centres(np.arange(10.0), 4), [1.5, 5.5, 8.5])
    np.testing.assert_allclose(trend.cell_centres([50.0, 40.0, 30.0, 20.0], 2), [45.0, 25.0])


@pytest.mark.parametrize("dy, dx", [(1.0, -2.0), (-1.5, 0.5), (0.25, 1.0)])
def test_sign_with_the_real_warp(dy, dx):
    """deform_warp with a constant offset moves a blob the way motion_to_vectors says."""
    h = w = 32
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((yy - 15.0) ** 2 + (xx - 14.0) ** 2) / (2 * 2.5**2))
    x = torch.tensor(blob, dtype=torch.float32).view(1, 1, h, w)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 1, 1] = 1.0  # only the centre tap: the output is the input sampled at position + offset
    offset = torch.tensor(_offsets(dy, dx, h, w), dtype=torch.float32).unsqueeze(0)
    out = deform_warp(x, offset, torch.ones(1, 9, h, w), weight)[0, 0].numpy()

    def centroid(a):
        return (a * yy).sum() / a.sum(), (a * xx).sum() / a.sum()

    (r0, c0), (r1, c1) = centroid(blob), centroid(out)
    d_col, d_row = trend.motion_to_vectors(offset[0].numpy(), patch=1, stride=1)
    assert r1 - r0 == pytest.approx(float(d_row.mean()), abs=0.05)
    assert c1 - c0 == pytest.approx(float(d_col.mean()), abs=0.05)
    assert np.sign(r1 - r0) == -np.sign(dy) and np.sign(c1 - c0) == -np.sign(dx)


# ------------------------------------------------------------------------------------ from a model


def _biased_model(motion=True):
    """A tiny random MotionRNN whose offsets are known: zero GRU weights, constant candidate bias."""
    torch.manual_seed(0)
    cfg = ModelConfig(motion=motion, **TINY)
    model = build_model(cfg)
    if motion:
        with torch.no_grad():
            b = model.motion_grus[0].conv_z.bias
            b[0::2], b[1::2] = BIAS_DY, BIAS_DX
    return model, cfg


@pytest.fixture(scope="module")
def biased_ckpt(tmp_path_factory):
    model, cfg = _biased_model()
    return save_checkpoint(tmp_path_factory.mktemp("m") / "biased.safetensors", model, cfg, {})


@pytest.fixture(scope="module")
def plain_ckpt(tmp_path_factory):
    model, cfg = _biased_model(motion=False)
    return save_checkpoint(tmp_path_factory.mktemp("m") / "plain.safetensors", model, cfg, {})


@pytest.fixture(scope="module")
def sample():
    from nowcast.radar import open_radar

    return open_radar([str(SAMPLE)])


def _expected_offsets(steps):
    """Offsets of the biased model by hand: with zero weights u = r = 0.5 and z = tanh(bias) = c."""
    f = d = 0.0
    trend_, filt = [], []
    for _ in range(steps):
        f_tr = 0.5 * 1.0 + 0.5 * f  # in units of c
        d = d + 0.5 * (f - d)
        f = f_tr + d
        trend_.append(d)
        filt.append(f)
    return np.array(trend_), np.array(filt)


@pytest.mark.parametrize("step, field", [(None, "trend"), (3, "trend"), (7, "filter")])
def test_trend_vectors_known_offsets(biased_ckpt, sample, step, field):
    fc = ModelForecaster.from_checkpoint(biased_ckpt, device="cpu")
    past = sample.isel(time=slice(-5, None))
    ds = trend.trend_vectors(fc, past, step=step, field=field)
    n = 5 if step is None else step
    assert ds.attrs["step"] == n and ds.attrs["field"] == field and ds.attrs["model"] == "biased"
    k = _expected_offsets(n)[0 if field == "trend" else 1][n - 1]
    # content moves by -offset x 8 pixels; y decreases with the row, so dy (along +y) = +offset_dy x 8
    assert ds["dx"].values == pytest.approx(-np.tanh(BIAS_DX) * k * 8, rel=1e-4)
    assert ds["dy"].values == pytest.approx(+np.tanh(BIAS_DY) * k * 8, rel=1e-4)
    # encoded cells of 8 x 8 pixels: 16 x 16 centres, y decreasing like the input's
    assert ds.sizes == {"y": 16, "x": 16}
    np.testing.assert_allclose(ds["x"].values, sample["x"].values.reshape(16, 8).mean(1))
    np.testing.assert_allclose(ds["y"].values, sample["y"].values.reshape(16, 8).mean(1))


def test_trend_vectors_array_input_odd_size_and_no_data(biased_ckpt):
    fc = ModelForecaster.from_checkpoint(biased_ckpt, device="cpu")
    x = np.full((6, 21, 30), 20.0, np.float32)
    x[:, :, :8] = np.nan  # the first column of cells is outside the coverage
    ds = trend.trend_vectors(fc, x, transient=True)
    assert ds.sizes == {"y": 3, "x": 4}  # ceil(21/8), ceil(30/8)
    np.testing.assert_allclose(ds["y"].values, [3.5, 11.5, 18.0])  # row indices; the last cell is partial
    assert np.isnan(ds["dx"].values[:, 0]).all() and np.isfinite(ds["dx"].values[:, 1:]).all()
    # without coordinates y is the row index: dy is along +row, the content moves up (offset dy > 0)
    assert (ds["dy"].values[:, 1:] < 0).all() and (ds["dx"].values[:, 1:] > 0).all()
    assert {"transient_dx", "transient_dy"} <= set(ds.data_vars)


def test_refusals(biased_ckpt, plain_ckpt, sample):
    fc = ModelForecaster.from_checkpoint(biased_ckpt, device="cpu")
    with pytest.raises(NowcastError, match="1 MotionGRU.*1 to 1"):
        trend.trend_vectors(fc, sample, layer=2)
    with pytest.raises(NowcastError, match="out of range"):
        trend.trend_vectors(fc, sample, step=8)  # 5 inputs + 3 outputs - 1 = 7 steps
    with pytest.raises(NowcastError, match="'last' or a whole number"):
        trend.trend_vectors(fc, sample, step="first")
    with pytest.raises(NowcastError, match="field"):
        trend.trend_vectors(fc, sample, field="speed")
    plain = ModelForecaster.from_checkpoint(plain_ckpt, device="cpu")
    with pytest.raises(NowcastError, match="model plain has no MotionGRU"):
        trend.trend_vectors(plain, sample)


# ------------------------------------------------------------------------------------ the CLI


def test_cli_end_to_end(biased_ckpt, tmp_path, capsys):
    png, nc = tmp_path / "trend.png", tmp_path / "trend.nc"
    rc = cli_main(["visualize-trend", str(SAMPLE), "-o", str(png), "--model", str(biased_ckpt),
                   "--transient", "--vectors", str(nc), "--every", "2", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert 400 <= img.shape[0] <= 1200 and 400 <= img.shape[1] <= 1200
    with xr.open_dataset(nc) as ds:
        assert {"dx", "dy", "transient_dx", "transient_dy"} <= set(ds.data_vars)
        assert ds["dx"].dims == ("y", "x") and ds.sizes == {"y": 16, "x": 16}
        assert ds["dx"].attrs["units"] == "grid cells per time step"
        assert ds.attrs["model"] == "biased" and ds.attrs["layer"] == 1 and ds.attrs["step"] == 5
        assert ds.attrs["field"] == "trend"
        assert ds["y"].values[0] > ds["y"].values[-1] and ds["y"].attrs["units"] == "m"
        assert float(ds["dx"].mean()) > 0 and float(ds["dy"].mean()) > 0  # see test_trend_vectors_known_offsets
    # outputs exist: refused without --overwrite, replaced with it
    assert cli_main(["visualize-trend", str(SAMPLE), "-o", str(png), "--model", str(biased_ckpt)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli_main(["visualize-trend", str(SAMPLE), "-o", str(png), "--model", str(biased_ckpt),
                     "--field", "filter", "--step", "2", "--overwrite", "--device", "cpu"]) == 0


def test_cli_refuses_model_without_motiongru(plain_ckpt, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="300")
    png = tmp_path / "t.png"
    res = subprocess.run([sys.executable, "-m", "nowcast", "visualize-trend", str(SAMPLE), "-o", str(png),
                          "--model", str(plain_ckpt), "--device", "cpu"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no MotionGRU" in lines[0] and "Traceback" not in res.stderr
    assert not png.exists()


def test_cli_bad_layer(biased_ckpt, tmp_path, capsys):
    rc = cli_main(["visualize-trend", str(SAMPLE), "-o", str(tmp_path / "t.png"), "--model", str(biased_ckpt),
                   "--layer", "3"])
    assert rc == 2 and "layer 3 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists()


# ------------------------------------------------------------------------------------ direction of a trained trend
# tests/fixtures/trend-tiny.safetensors: a tiny MotionRNN trained briefly on synthetic uniform motion (random
# directions) and rotation (both senses); made by tests/fixtures/make_trend_model.py (see fixtures/README.md).
# The sequences below use seeds the training did not see.

needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason="trend fixture model missing")


@pytest.fixture(scope="module")
def trained():
    return ModelForecaster.from_checkpoint(FIXTURE, device="cpu")


def _echo_cells(da, cell):
    """Cells with some echo in the last input frame: elsewhere the trend has nothing to follow."""
    f = da.values[-1]
    H, W = f.shape
    return (f >= 15.0).reshape(H // cell, cell, W // cell, cell).mean(axis=(1, 3)) > 0.1


def _angle_diff(a, b):
    return abs((a - b + 180.0) % 360.0 - 180.0)


@needs_fixture
@pytest.mark.parametrize("heading, seed", [(90, 101), (90, 102), (270, 103), (0, 104), (180, 105)])
def test_trained_trend_follows_uniform_motion(trained, heading, seed):
    """Echoes moving east (heading 90, clockwise from north) give trend arrows pointing east on average;
    the other headings show that the arrows follow the input rather than a fixed learned bias."""
    da = generate(n_frames=trained.input_frames, height=64, width=64, seed=seed, motion="uniform",
                  speed=3.0, heading_deg=heading)
    ds = trend.trend_vectors(trained, da)
    m = _echo_cells(da, ds.attrs["cell_pixels"])
    dx, dy = float(ds["dx"].values[m].mean()), float(ds["dy"].values[m].mean())
    measured = float(np.degrees(np.arctan2(dx, dy)) % 360.0)  # clockwise from north (+y), like heading
    assert np.hypot(dx, dy) > 0.2, f"trend too weak to have a direction: {np.hypot(dx, dy):.2f} cells/step"
    assert _angle_diff(measured, heading) < 45.0, f"trend heads {measured:.0f} deg, echoes move {heading} deg"


@needs_fixture
@pytest.mark.parametrize("deg, seed", [(5.0, 201), (5.0, 202), (-5.0, 203)])
def test_trained_trend_follows_rotation(trained, deg, seed):
    """Counterclockwise rotation (deg > 0) gives arrows with a positive mean tangential (CCW) component and
    a positive mean angular velocity about the centre; clockwise rotation the opposite."""
    da = generate(n_frames=trained.input_frames, height=64, width=64, seed=seed, motion="rotation",
                  rotation_deg_per_step=deg)
    ds = trend.trend_vectors(trained, da)
    X, Y = np.meshgrid(ds["x"].values, ds["y"].values)
    px = abs(float(da["x"][1] - da["x"][0]))
    rx, ry = (X - float(da["x"].mean())) / px, (Y - float(da["y"].mean())) / px  # grid cells, y north
    r = np.hypot(rx, ry)
    m = _echo_cells(da, ds.attrs["cell_pixels"]) & (r > 4)
    dx, dy = ds["dx"].values[m], ds["dy"].values[m]
    tangential = float(((-ry[m] * dx + rx[m] * dy) / r[m]).mean())  # along the CCW direction
    omega = float(np.degrees(((rx[m] * dy - ry[m] * dx) / r[m] ** 2).mean()))  # deg per step, CCW positive
    assert np.sign(tangential) == np.sign(deg) and np.sign(omega) == np.sign(deg), (tangential, omega)
    assert abs(omega) > 0.3, f"mean rotation {omega:.2f} deg/step is too weak to count"


# ------------------------------------------------------------------------------------ Lagrangian models


def test_lagrangian_trend_draws_the_flow_and_the_learned_correction(tmp_path):
    """A blob moving east: the optical-flow arrows point east; the correction is the MotionGRU's own field."""
    from radar_files import storm

    cfg = ModelConfig(**TINY, residual=True, frame="lagrangian")
    torch.manual_seed(0)
    forecaster = ModelForecaster(build_model(cfg), {"config": cfg, "name": "lagrangian-tiny"}, device="cpu")
    frames = storm(n=5, h=64, w=64, dx=2)
    vec = trend.trend_vectors(forecaster, frames, field="filter")
    assert vec.attrs["frame"] == "lagrangian"
    core = np.isfinite(vec["flow_dx"].values) & (np.abs(vec["flow_dx"].values) > 0.5)
    assert core.any() and float(np.median(vec["flow_dx"].values[core])) > 1.0  # east, about 2 pixels per step
    np.testing.assert_allclose(vec["total_dx"].values, vec["flow_dx"].values + vec["dx"].values, atol=1e-5)
    assert trend.summarise(vec)["mean_dx"] == pytest.approx(float(np.nanmean(vec["total_dx"].values)))
    fig = trend.plot_trend_vectors(vec, frames[-1], tmp_path / "trend.png")
    quivers = {q.get_gid(): q for q in fig.axes[0].collections if q.get_gid()}
    assert set(quivers) == {"optical flow", "learned correction (filter)"}
    flow_u = np.asarray(quivers["optical flow"].U)
    assert np.nanmax(flow_u) > 1.0 and np.nanmin(flow_u) > -0.5  # drawn pointing east
    assert (tmp_path / "trend.png").stat().st_size > 0


def test_shipped_model_trend_points_east_on_a_blob_moving_east(tmp_path):
    """The README's trend picture comes from the shipped Lagrangian model: on a blob moving east its arrows do too."""
    from radar_files import storm, write_nc

    path = write_nc(tmp_path / "blob.nc", storm(n=6, h=64, w=96, dx=2))
    out, vectors = tmp_path / "trend.png", tmp_path / "trend.nc"
    assert cli_main(["visualize-trend", str(path), "-o", str(out), "--vectors", str(vectors)]) == 0
    with xr.open_dataset(vectors) as ds:
        assert ds.attrs["frame"] == "lagrangian"
        moving = np.isfinite(ds["total_dx"].values) & (np.hypot(ds["flow_dx"], ds["flow_dy"]).values > 0.5)
        assert moving.any()
        # x grows to the east in the file: the echoes' motion, flow plus correction, points east
        assert float(np.median(ds["total_dx"].values[moving])) > 1.0
        assert abs(float(np.median(ds["total_dy"].values[moving]))) < 0.5
