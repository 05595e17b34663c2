"""Tests of the colour scale and the plots (files written, sizes, content comes from the data)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from matplotlib.quiver import Quiver, QuiverKey
from PIL import Image

from nowcast import plots
from nowcast.colors import LEVELS_DBZ, NODATA_RGB, dbz_to_rgba, reflectivity_cmap
from nowcast.errors import NowcastError
from nowcast.synthetic import generate
from nowcast.radar import open_radar
from radar_files import storm, times, write_nc


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


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_images() and ax.get_title()]


def test_forecast_panels(tmp_path, seq):
    path = tmp_path / "panels.png"
    fig = plots.plot_forecast_panels(seq[:5], seq[5:8], path, observed=seq[5:8], method_name="Persistence")
    assert path.exists()
    img = _rgb(path)
    assert (img.shape[1], img.shape[0]) == _expected_size(fig)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10
    titles = [ax.get_title() for ax in _image_axes(fig)]
    assert len(titles) == 5 + 3 + 3  # every input, every lead, every observation
    assert titles[:5] == [f"Observed {m:+d} min\n2026-01-01 12:{s:02d} UTC" for m, s in zip(range(-20, 1, 5), range(0, 21, 5))]
    assert titles[5] == "Persistence +5 min\n2026-01-01 12:25 UTC"
    assert titles[-1] == "Observed +15 min\n2026-01-01 12:35 UTC"
    assert fig.get_suptitle() == "Persistence nowcast from 2026-01-01 12:20 UTC, every 5 min"
    assert [p.name for p in tmp_path.iterdir()] == ["panels.png"]  # written atomically, nothing left over


def test_panels_show_all_inputs_and_evenly_spaced_leads(tmp_path):
    seq = generate(n_frames=20, height=32, width=32, seed=1)
    # a long history: only the last 5 inputs; 10 leads in 5 panels: every second lead, ending with the last
    fig = plots.plot_forecast_panels(seq[:10], seq[10:20], tmp_path / "p.png")
    assert all(ax.get_visible() for ax in fig.axes)  # no empty slot
    titles = [ax.get_title().split("\n")[0] for ax in _image_axes(fig)]
    assert titles == ["Observed -20 min", "Observed -15 min", "Observed -10 min", "Observed -5 min", "Observed +0 min",
                      "forecast +10 min", "forecast +20 min", "forecast +30 min", "forecast +40 min", "forecast +50 min"]
    assert plots._lead_indices(10, 5) == [1, 3, 5, 7, 9]
    assert plots._lead_indices(15, 5) == [2, 5, 8, 11, 14]
    assert plots._lead_indices(12, 5) == [2, 5, 8, 11]  # stride 3: regular beats "exactly 5"
    assert plots._lead_indices(3, 5) == [0, 1, 2]


def test_panels_title_with_the_forecast_method(tmp_path, seq):
    fc = seq[5:8].copy()
    fc.attrs["method"] = "extrapolation"
    fig = plots.plot_forecast_panels(seq[:5], fc, tmp_path / "p.png")
    assert fig.get_suptitle().startswith("extrapolation nowcast")


def _legend_labels(fig):
    return {t.get_text(): h for lg in fig.legends for t, h in zip(lg.get_texts(), lg.legend_handles)}


def test_panels_have_a_graticule_and_a_no_data_legend(tmp_path, seq):
    fig = plots.plot_forecast_panels(seq[:5], seq[5:8], tmp_path / "p.png")
    legend = _legend_labels(fig)
    assert np.allclose(np.array(legend["no data"].get_facecolor()[:3]) * 255, NODATA_RGB, atol=1)
    assert "no echo (< 10 dBZ)" in legend and "latitude / longitude" in legend
    first = _image_axes(fig)[0]
    gids = {c.get_gid() for c in first.collections}
    assert {"graticule-lat", "graticule-lon"} <= gids
    lat_lines = next(c for c in first.collections if c.get_gid() == "graticule-lat")
    # the synthetic grid spans 50N +- 24 km = +- 0.216 degrees: lines every 0.1 degree
    assert np.allclose(lat_lines.levels, [49.8, 49.9, 50.0, 50.1, 50.2])
    assert first.get_ylim()[1] == pytest.approx(24.0)  # lines drawn without moving the limits
    # no grid mapping (or geography off): the same figure without lines, and no legend entry for them
    bare = plots.plot_forecast_panels(seq[:5].values, seq[5:8].values, tmp_path / "b.png")
    assert not any(c.get_gid() for ax in bare.axes for c in ax.collections)
    assert "latitude / longitude" not in _legend_labels(bare) and "no data" in _legend_labels(bare)
    off = plots.plot_forecast_panels(seq[:5], seq[5:8], tmp_path / "o.png", geography=False)
    assert not any(c.get_gid() for ax in off.axes for c in ax.collections)


def test_panels_come_from_the_data(tmp_path, seq):
    dry = xr.full_like(seq[5:8], -10.0)
    storm = seq[5:8].copy()
    storm[:, 10:30, 10:30] = 55.0
    holes = dry.copy()
    holes[:, :, :24] = np.nan
    imgs = {}
    for name, fc in {"dry": dry, "storm": storm, "holes": holes}.items():
        path = tmp_path / f"{name}.png"
        plots.plot_forecast_panels(seq[:5], fc, path, n_inputs_shown=2, geography=False)
        imgs[name] = _rgb(path)
    assert not np.array_equal(imgs["dry"], imgs["storm"])
    grey_dry, grey_holes = _count_rgb(imgs["dry"], NODATA_RGB), _count_rgb(imgs["holes"], NODATA_RGB)
    assert grey_holes > grey_dry + 1000  # NaN is drawn grey, the floor is not


def test_plot_frame_pixel_and_km_axes(seq):
    fig = plots._new_figure(4, 3, 50)
    a, b = fig.subplots(1, 2)
    plots.plot_frame(a, seq[0].values)
    plots.plot_frame(b, seq[0])
    assert a.get_xlabel().startswith("column") and b.get_xlabel() == "x (km)"
    lo, hi = b.get_ylim()
    assert hi > lo and hi == pytest.approx(24.0)  # north (larger y) at the top


def _record_gif_titles(monkeypatch):
    from matplotlib.animation import PillowWriter

    titles = []
    grab = PillowWriter.grab_frame

    def recording_grab(self, **kwargs):
        titles.append((self.fig.get_suptitle(), self.fig.axes[0].get_title()))
        return grab(self, **kwargs)

    monkeypatch.setattr(PillowWriter, "grab_frame", recording_grab)
    return titles


def test_animation_shows_the_last_inputs_then_the_forecast(tmp_path, seq, monkeypatch):
    titles = _record_gif_titles(monkeypatch)
    path = tmp_path / "a.gif"
    fc = seq[6:8].copy()
    fc.attrs["method"] = "extrapolation"
    plots.animate_forecast(seq[:6], fc, path)  # a 6-frame history: only the last 5 are shown
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 5 + 2
    assert [t for _, t in titles] == [
        "Observed -20 min\n2026-01-01 12:05 UTC", "Observed -15 min\n2026-01-01 12:10 UTC",
        "Observed -10 min\n2026-01-01 12:15 UTC", "Observed -5 min\n2026-01-01 12:20 UTC",
        "Observed +0 min\n2026-01-01 12:25 UTC",
        "Forecast (extrapolation) +5 min\n2026-01-01 12:30 UTC", "Forecast (extrapolation) +10 min\n2026-01-01 12:35 UTC"]
    assert {s for s, _ in titles} == {"extrapolation nowcast from 2026-01-01 12:25 UTC"}  # the method on every frame
    plots.animate_forecast(seq[:6], seq[6:8], path, n_inputs=3)
    with Image.open(path) as im:
        assert im.n_frames == 3 + 2
    with pytest.raises(NowcastError):
        plots.animate_forecast(seq[:4], seq[4:8], tmp_path / "a.png")


def test_animation_frames_grow_with_the_grid(tmp_path):
    small = generate(n_frames=3, height=32, width=32, seed=0)
    large = xr.DataArray(np.full((3, 600, 400), 20.0, np.float32), dims=("time", "y", "x"),
                         coords={"time": small["time"].values})
    sizes = {}
    for name, s in (("small", small), ("large", large)):
        path = tmp_path / f"{name}.gif"
        plots.animate_forecast(s[:2], s[2:], path)
        with Image.open(path) as im:
            sizes[name] = im.size
    assert sizes["small"][0] >= 420 + 150  # a tiny grid is still readable
    w, h = sizes["large"]
    assert h >= 600 + 150 and w < h  # one screen pixel per cell, the grid's shape (taller than wide)


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


def _motion_quiver(fig):
    return next(q for q in fig.axes[0].collections if isinstance(q, Quiver) and q.get_gid() == "motion")


def _quiver_key_text(fig):
    keys = [a for a in fig.axes[0].get_children() if isinstance(a, QuiverKey)]
    assert len(keys) == 1
    return keys[0].text.get_text()


def test_motion_field_arrows_follow_the_pysteps_convention(tmp_path, seq):
    frame = seq[-1]
    east = np.zeros((2,) + frame.shape)
    east[0] = 2.0  # two columns to the right per step
    path = tmp_path / "m.png"
    fig = plots.plot_motion_field(frame, east, path, time_step_minutes=5)
    q = _motion_quiver(fig)
    assert np.all(q.U > 0) and np.allclose(q.V, 0) and np.allclose(q.U, 2.0)
    # 2 pixels of 1 km per 5 minutes = 24 km/h; the key is a round number of pixels per step
    assert _quiver_key_text(fig) == "2 pixels per step = 24 km/h"
    assert "2026-01-01 12:35 UTC" in fig.get_suptitle()
    assert 15 <= len(q.U) ** 0.5 <= 30  # about 25 arrows across
    assert np.all((q.X > -24) & (q.X < 24)) and np.all((q.Y > -24) & (q.Y < 24))  # on the image, in km
    assert (_rgb(path).shape[1], _rgb(path).shape[0]) == _expected_size(fig)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]

    south = np.zeros_like(east)
    south[1] = 1.0  # rows downwards: southwards on a north-up map
    q = _motion_quiver(plots.plot_motion_field(frame, south, path, every=8))
    assert np.all(q.V < 0) and np.allclose(q.U, 0) and q.N == 36
    # pixel axes (no coordinates): the row axis points down, so the same field has V > 0
    fig = plots.plot_motion_field(frame.values, south, path, title="flow")
    assert np.all(_motion_quiver(fig).V > 0)
    assert _quiver_key_text(fig) == "1 pixels per step"  # no pixel size: no km/h
    assert fig.get_suptitle() == "flow"


def test_motion_field_speed_needs_pixel_size_and_time_step(tmp_path, seq):
    frame = seq[-1].copy()
    vel = np.zeros((2,) + frame.shape)
    vel[0] = 1.0
    fig = plots.plot_motion_field(frame, vel, tmp_path / "m.png", time_step_minutes=10)
    assert _quiver_key_text(fig) == "1 pixels per step = 6 km/h"
    # a lone frame of generate() does not know its step: pixels only
    assert _quiver_key_text(plots.plot_motion_field(frame, vel, tmp_path / "m.png")) == "1 pixels per step"
    # a frame read by open_radar knows it (10-minute data, 1 km pixels)
    read = open_radar(write_nc(tmp_path / "r.nc", storm(n=3, h=40, w=48), time=times(3, step_min=10)))
    fig = plots.plot_motion_field(read.isel(time=-1), vel[:, :40, :48], tmp_path / "m.png")
    assert _quiver_key_text(fig) == "1 pixels per step = 6 km/h"
    assert plots.speed_kmh(3.0, 500.0, 10.0) == pytest.approx(9.0)
    with pytest.raises(NowcastError, match="velocity must have shape"):
        plots.plot_motion_field(frame, vel[:, :10], tmp_path / "m.png")
    with pytest.raises(NowcastError):
        plots.plot_motion_field(frame, vel, tmp_path / "m.png", overwrite=False)


def test_motion_field_of_a_storm_moving_east(tmp_path):
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    from nowcast.methods import Extrapolation

    values = storm(n=4, h=40, w=48, dx=2)  # a storm moving 2 pixels to the east per frame
    velocity = Extrapolation.motion(values)
    fig = plots.plot_motion_field(values[-1], velocity, tmp_path / "m.png", every=4)
    q = _motion_quiver(fig)
    near_storm = (np.abs(q.X - (12 + 2 * 3)) <= 6) & (np.abs(q.Y - 20) <= 6)
    assert near_storm.sum() >= 4
    assert np.all(q.U[near_storm] > 1.0) and np.all(np.abs(q.V[near_storm]) < 0.5)


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
