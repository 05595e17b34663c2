"""Tests of the colour scale and the plots (files written, sizes, content comes from the data)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from matplotlib.quiver import Quiver
from PIL import Image

from nowcast import plots
from nowcast.colors import LEVELS_DBZ, NODATA_RGB, dbz_to_rgba, reflectivity_cmap
from nowcast.errors import NowcastError
from nowcast.synthetic import generate


@pytest.fixture(scope="module")
def seq():
    return generate(n_frames=8, height=48, width=48, seed=3)


def _rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _expected_size(fig):
    w, h = fig.get_size_inches() * fig.dpi
    return int(round(w)), int(round(h))


def _count_rgb(img, rgb):
    return int(np.all(img == np.array(rgb, dtype=np.uint8), axis=-1).sum())


def test_colour_scale():
    cmap, norm = reflectivity_cmap()
    assert LEVELS_DBZ[0] == 10 and LEVELS_DBZ[-1] == 70 and np.allclose(np.diff(LEVELS_DBZ), 5)
    rgba = dbz_to_rgba([np.nan, -10.0, 9.9, 10.0, 32.0, 52.0, 69.9, 75.0])
    assert rgba[1, 3] == 0 and rgba[2, 3] == 0  # no echo: transparent
    assert np.allclose(rgba[0, :3] * 255, NODATA_RGB, atol=1)  # no data: grey
    assert rgba[0, 3] == 1
    colours = {tuple(np.round(c, 3)) for c in rgba[3:]}
    assert len(colours) == 5  # each bin its own colour, >= 70 too


def test_forecast_panels(tmp_path, seq):
    path = tmp_path / "panels.png"
    fig = plots.plot_forecast_panels(seq[:5], seq[5:8], path, observed=seq[5:8], method_name="Persistence")
    assert path.exists()
    img = _rgb(path)
    assert (img.shape[1], img.shape[0]) == _expected_size(fig)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any("+5 min" in t and "12:25 UTC" in t for t in titles)
    assert any(t.startswith("Input 12:20 UTC") for t in titles)
    assert "Persistence" in fig._suptitle.get_text()
    assert [p.name for p in tmp_path.iterdir()] == ["panels.png"]  # written atomically, nothing left over


def test_panels_come_from_the_data(tmp_path, seq):
    dry = xr.full_like(seq[5:8], -10.0)
    storm = seq[5:8].copy()
    storm[:, 10:30, 10:30] = 55.0
    holes = dry.copy()
    holes[:, :, :24] = np.nan
    imgs = {}
    for name, fc in {"dry": dry, "storm": storm, "holes": holes}.items():
        path = tmp_path / f"{name}.png"
        plots.plot_forecast_panels(seq[:5], fc, path, n_inputs_shown=2)
        imgs[name] = _rgb(path)
    assert not np.array_equal(imgs["dry"], imgs["storm"])
    grey_dry, grey_holes = _count_rgb(imgs["dry"], NODATA_RGB), _count_rgb(imgs["holes"], NODATA_RGB)
    assert grey_holes > grey_dry + 1000  # NaN is drawn grey, the floor is not


def test_panels_pick_a_subset_of_many_leads(tmp_path):
    seq = generate(n_frames=15, height=32, width=32, seed=1)
    fig = plots.plot_forecast_panels(seq[:5], seq[5:15], tmp_path / "p.png", max_leads=5)
    leads = [ax.get_title() for ax in fig.axes if "min" in ax.get_title() and not ax.get_title().startswith("Input")]
    assert len(leads) == 5 and "+5 min" in leads[0] and "+50 min" in leads[-1]


def test_plot_frame_pixel_and_km_axes(seq):
    fig = plots._new_figure(4, 3, 50)
    a, b = fig.subplots(1, 2)
    plots.plot_frame(a, seq[0].values)
    plots.plot_frame(b, seq[0])
    assert a.get_xlabel().startswith("column") and b.get_xlabel() == "x (km)"
    lo, hi = b.get_ylim()
    assert hi > lo and hi == pytest.approx(24.0)  # north (larger y) at the top


def test_animation_has_one_frame_per_time(tmp_path, seq):
    path = tmp_path / "a.gif"
    plots.animate_forecast(seq[:4], seq[4:8], path)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 8
    with pytest.raises(NowcastError):
        plots.animate_forecast(seq[:4], seq[4:8], tmp_path / "a.png")


def test_score_curves(tmp_path):
    result = {
        "thresholds_dbz": [30, 40],
        "time_step_minutes": 5,
        "results": {
            "persistence": {"csi_per_lead": {"30": [0.7, None, 0.5], "40": [0.5, 0.4, 0.3]}, "pod_per_lead": {"30": [0.8, 0.7, 0.6], "40": [0.6, 0.5, None]}, "far_per_lead": {"30": [0.2, 0.3, 0.4], "40": [None, None, None]}},
            "motionrnn": {"csi_per_lead": {"30": [0.8, 0.7, 0.6], "40": [0.6, 0.5, 0.4]}},
        },
    }
    path = tmp_path / "scores.png"
    fig = plots.plot_score_curves(result, path)
    img = _rgb(path)
    assert (img.shape[1], img.shape[0]) == _expected_size(fig)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and np.allclose(lines[0].get_xdata(), [5, 10, 15])
    assert np.isnan(lines[0].get_ydata()[1])
    assert fig.axes[0].get_xlabel() == "Lead time (min)"


def _quivers(fig):
    return {q.get_gid(): q for q in fig.axes[0].collections if isinstance(q, Quiver)}


def test_trend_arrows_point_the_way_the_field_moves(tmp_path, seq):
    field = seq[0]
    dx = np.full(field.shape, 1.5)  # moving east
    dy = np.full(field.shape, 0.5)  # and north (+y)
    fig = plots.plot_trend(field, dx, dy, tmp_path / "t.png", transient_dx=-dx, transient_dy=np.zeros_like(dy))
    q = _quivers(fig)
    assert set(q) == {"trend", "transient"}
    assert np.mean(q["trend"].U) > 0 and np.mean(q["trend"].V) > 0  # km axes, north up: V > 0 is up
    assert np.allclose(q["trend"].U, 1.5) and np.allclose(q["trend"].V, 0.5)  # 1 km pixels: km per step
    assert np.mean(q["transient"].U) < 0
    assert 10 <= len(q["trend"].U) ** 0.5 <= 30  # about 20 arrows across
    img = _rgb(tmp_path / "t.png")
    assert (img.shape[1], img.shape[0]) == _expected_size(fig)


def test_trend_in_pixels_and_on_a_coarse_grid(tmp_path, seq):
    field = seq[0].values  # no coordinates: pixel axes, rows increase downwards
    dx = np.full((12, 12), 1.0)
    dy = np.full((12, 12), 1.0)  # towards +y (north): up, i.e. towards smaller rows
    fig = plots.plot_trend(field, dx, dy, tmp_path / "t.png", every=2)
    q = _quivers(fig)["trend"]
    assert np.all(q.U > 0) and np.all(q.V < 0)
    assert q.N == 36
    assert np.all((q.X > 0) & (q.X < 47)) and np.all((q.Y > 0) & (q.Y < 47))
    fig = plots.plot_trend(field, dx, dy, tmp_path / "r.png", every=2, dy_along="row")
    assert np.all(_quivers(fig)["trend"].V > 0)


def test_outputs_are_checked(tmp_path, seq):
    with pytest.raises(NowcastError):
        plots.plot_forecast_panels(seq[:3], seq[3:5], tmp_path / "missing" / "p.png")
    with pytest.raises(NowcastError):
        plots.plot_forecast_panels(seq[:3], seq[3:5], tmp_path / "p")
    path = tmp_path / "p.png"
    plots.plot_forecast_panels(seq[:3], seq[3:5], path)
    with pytest.raises(NowcastError):
        plots.plot_forecast_panels(seq[:3], seq[3:5], path, overwrite=False)


def test_score_curves_with_mixed_time_steps(tmp_path):
    # sequences of 5- and 10-minute data pooled together: the x axis counts frames instead of minutes
    result = {"thresholds_dbz": [30], "time_step_minutes": [5.0, 10.0],
              "results": {"persistence": {"csi_per_lead": {"30": [0.5, 0.4, 0.3]}}}}
    fig = plots.plot_score_curves(result, tmp_path / "mixed.png")
    assert (tmp_path / "mixed.png").stat().st_size > 1000
    assert fig.axes[0].get_xlabel() == "Lead time (frames)"
