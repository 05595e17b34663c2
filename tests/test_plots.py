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
    assert titles[:5] == [f"Observed {m:+d} min\n12:{s:02d} UTC" for m, s in zip(range(-20, 1, 5), range(0, 21, 5))]
    assert titles[5] == "Forecast +5 min\n12:25 UTC"  # the method and the date are in the figure's title
    assert titles[-1] == "Observed +15 min\n12:35 UTC"
    assert fig.get_suptitle() == "Persistence nowcast from 2026-01-01 12:20 UTC, every 5 min"
    assert [p.name for p in tmp_path.iterdir()] == ["panels.png"]  # written atomically, nothing left over


def test_panels_show_all_inputs_and_evenly_spaced_leads(tmp_path):
    seq = generate(n_frames=20, height=32, width=32, seed=1)
    # a long history: only the last 5 inputs; 10 leads in 5 panels: every second lead, ending with the last
    fig = plots.plot_forecast_panels(seq[:10], seq[10:20], tmp_path / "p.png")
    assert all(ax.get_visible() for ax in fig.axes)  # no empty slot
    titles = [ax.get_title().split("\n")[0] for ax in _image_axes(fig)]
    assert titles == ["Observed -20 min", "Observed -15 min", "Observed -10 min", "Observed -5 min", "Observed +0 min",
                      "Forecast +10 min", "Forecast +20 min", "Forecast +30 min", "Forecast +40 min", "Forecast +50 min"]
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
    assert np.allclose(np.array(legend["no data / no forecast"].get_facecolor()[:3]) * 255, NODATA_RGB, atol=1)
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
    assert "latitude / longitude" not in _legend_labels(bare) and "no data / no forecast" in _legend_labels(bare)
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
        "Forecast +5 min\n2026-01-01 12:30 UTC", "Forecast +10 min\n2026-01-01 12:35 UTC"]
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
    from nowcast.motion import estimate_motion

    values = storm(n=4, h=40, w=48, dx=2)  # a storm moving 2 pixels to the east per frame
    velocity = estimate_motion(values)
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


# ------------------------------------------------------------------------------------ readable text


def _drawn_texts(fig):
    """Every non-empty text the renderer draws, with its box in screen pixels: titles, labels, legends,
    the tick labels of the ticks in view (also of colour bars and the lat/lon label axes), keys."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = list(fig.axes)
    axes += [child for ax in fig.axes for child in ax.child_axes]
    tick_texts, drawn = set(), []
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis._update_ticks():  # the ticks in view, the ones drawn
                drawn += [t for t in (tick.label1, tick.label2) if t.get_visible()]
            for tick in axis.majorTicks + axis.minorTicks:  # all of them (more than before _update_ticks)
                tick_texts.update((id(tick.label1), id(tick.label2)))
    drawn += [t for t in fig.findobj(Text) if id(t) not in tick_texts]
    boxes = []
    for t in drawn:
        if t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible()):
            boxes.append((t.get_text(), t.get_window_extent(renderer)))
    return boxes


def _overlaps(fig, tolerance=0.5):
    """Pairs of drawn texts whose boxes overlap (by more than `tolerance` pixels either way)."""
    boxes = _drawn_texts(fig)
    found = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            dx = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            dy = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if dx > tolerance and dy > tolerance:
                found.append((a, b))
    return found


def _inside_figure(fig):
    w, h = fig.canvas.get_width_height()
    return [text for text, box in _drawn_texts(fig) if box.x0 < -1 or box.y0 < -1 or box.x1 > w + 1 or box.y1 > h + 1]


def test_overlap_check_finds_overlapping_text():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=100)
    FigureCanvasAgg(fig)
    fig.text(0.1, 0.5, "motionrnn-lagrangian-radar +10 min")
    fig.text(0.3, 0.5, "+20 min")
    assert ("motionrnn-lagrangian-radar +10 min", "+20 min") in _overlaps(fig)


SAMPLE = "sample_data/radar.nc"


@pytest.mark.parametrize("units", ["dBZ", "mm/h"])
def test_panel_text_never_overlaps_at_the_sizes_predict_draws(tmp_path, units):
    """predict --plot: 5 inputs, 5 of 10 leads, the observations below (--truth); a long method name; lat/lon
    labels outside the frames; the figure in the forecast file's units."""
    from pathlib import Path

    seq = open_radar(Path(__file__).resolve().parents[1] / SAMPLE)
    inputs, later = seq[:5], seq[5:15]
    fc = later.copy()
    fig = plots.plot_forecast_panels(inputs, fc, tmp_path / "p.png", observed=later,
                                     method_name="motionrnn-lagrangian-radar", units=units)
    assert _overlaps(fig) == [] and _inside_figure(fig) == []
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles[5] == "Forecast +10 min\n12:30 UTC" and titles[0].startswith("Observed -20 min")
    texts = [t for t, _ in _drawn_texts(fig)]
    assert any(t.endswith("\u00b0N") for t in texts) and any(t.endswith("\u00b0E") for t in texts)
    bar = fig.axes[-1]
    assert bar.get_ylabel() == ("Reflectivity (dBZ)" if units == "dBZ" else "Rain rate (mm/h)")
    legend = _legend_labels(fig)
    assert ("no echo (< 10 dBZ)" if units == "dBZ" else "no rain (< 0.1 mm/h)") in legend


def test_panel_text_never_overlaps_on_a_tall_grid_and_in_the_animation(tmp_path):
    tall = generate(n_frames=12, height=150, width=70, seed=5)
    fig = plots.plot_forecast_panels(tall[:5], tall[5:12], tmp_path / "t.png", method_name="extrapolation")
    assert _overlaps(fig) == [] and _inside_figure(fig) == []
    gif = plots.animate_forecast(tall[:5], tall[5:7], tmp_path / "t.gif", method_name="motionrnn-lagrangian-radar")
    assert _overlaps(gif) == [] and _inside_figure(gif) == []


def test_rain_rate_panels_draw_the_rain_rate_scale(tmp_path, seq):
    """mm/h: 35 dBZ is 5.615 mm/h ((10^3.5 / 200)^(1/1.6), Marshall-Palmer), drawn in the 5-10 mm/h colour (the 30-35 dBZ colour sits
    at 2.7-5.6 mm/h, so the same colour list on round rates)."""
    from nowcast.colors import BIN_COLORS, LEVELS_MMH
    from matplotlib.colors import to_rgba

    fig = plots.plot_forecast_panels(seq[:2], xr.full_like(seq[2:3], 35.0), tmp_path / "r.png", units="mm/h",
                                     n_inputs_shown=1, geography=False)
    image = fig.axes[1].images[0]
    assert float(image.get_array().max()) == pytest.approx(5.6151, abs=1e-3)
    colour = image.cmap(image.norm(np.array([5.6151])))[0]
    assert tuple(colour) == to_rgba(BIN_COLORS[LEVELS_MMH.index(5.0)])
    with pytest.raises(ValueError, match="dBZ or mm/h"):
        plots.plot_forecast_panels(seq[:2], seq[2:3], tmp_path / "x.png", units="inch/h")


def test_trend_picture_title_legend_and_key_do_not_overlap(tmp_path):
    from nowcast import trend
    from pathlib import Path

    seq = open_radar(Path(__file__).resolve().parents[1] / SAMPLE)
    last = seq.isel(time=-1)
    h, w = last.shape
    yy, xx = np.mgrid[0:h:4, 0:w:4]
    vectors = xr.Dataset(
        {"dx": (("y", "x"), np.full(yy.shape, 0.3)), "dy": (("y", "x"), np.full(yy.shape, -0.2)),
         "flow_dx": (("y", "x"), np.full(yy.shape, 1.5)), "flow_dy": (("y", "x"), np.full(yy.shape, 1.0))},
        coords={"y": last["y"].values[::4], "x": last["x"].values[::4]},
        attrs={"model": "motionrnn-lagrangian-radar", "layer": 1, "step": 5, "input_frames": 5,
               "step_reads": "input frame 5", "field": "trend", "frame": "lagrangian"})
    fig = trend.plot_trend_vectors(vectors, last, tmp_path / "trend.png")
    assert _overlaps(fig) == [] and _inside_figure(fig) == []
    title = fig.get_suptitle()
    assert title.startswith("How motionrnn-lagrangian-radar moves the echoes at 2026-01-01 ")
    assert "MotionGRU" not in title and "last observed frame" in title
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["optical flow", "learned correction (trend)"]
    # the legend lies inside the figure, below the picture
    box = legend.get_window_extent(fig.canvas.get_renderer())
    assert box.y0 >= 0 and box.y1 <= fig.axes[0].get_window_extent().y0


def test_predict_draws_the_panels_and_animation_in_the_files_units(tmp_path, monkeypatch):
    """--output-units mm/h (or rain-rate input): the pictures are in mm/h too; dBZ input: dBZ."""
    from nowcast.cli import main

    drawn = []
    for name in ("plot_forecast_panels", "animate_forecast"):
        original = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _f=original, **kw: drawn.append(kw["units"]) or _f(*a, **kw))
    radar = write_nc(tmp_path / "r.nc", storm(n=6))
    for units in ("mm/h", "dBZ"):
        rc = main(["predict", str(radar), "--method", "persistence", "--leads", "2", "-o", str(tmp_path / "f.nc"),
                   "--overwrite",
                   "--output-units", units, "--plot", str(tmp_path / "p.png"), "--animate", str(tmp_path / "a.gif")])
        assert rc == 0
    assert drawn == ["mm/h", "mm/h", "dBZ", "dBZ"]
    rate = write_nc(tmp_path / "rate.nc", np.full((6, 20, 24), 2.0, np.float32), units="mm/h")
    assert main(["predict", str(rate), "--method", "persistence", "--leads", "2", "-o", str(tmp_path / "g.nc"),
                 "--plot", str(tmp_path / "q.png")]) == 0
    assert drawn[-1] == "mm/h"
