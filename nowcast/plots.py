"""Pictures: forecast panels, animations, score curves and motion-trend arrows.

Everything is drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas (no pyplot, so no global
figure state), and every file is written atomically (temporary name, then rename).  Each function returns
the Figure it drew, so that callers and tests can look at what was plotted.

Orientation: images are drawn north up.  With x/y coordinates the axes are in km and the image is placed
by its extent; radar y usually decreases with the row index, so row 0 is at the top.  Without coordinates
the axes are in pixels (column to the right, row downwards, row 0 at the top).
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import geo, timeaxis
from .atomic import atomic_output
from .colors import add_colorbar, check_units, legend_handles, reflectivity_cmap
from .errors import NowcastError
from .units import dbz_to_rainrate

DEFAULT_STEP_MINUTES = 5.0
TREND_COLOR = "black"
TRANSIENT_COLOR = "#ff1493"


# ---------------------------------------------------------------------------------------------------------
# helpers


def _new_figure(width_in: float, height_in: float, dpi: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path, overwrite: bool = True) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise NowcastError("the output file needs a suffix naming the image format (e.g. .png)", path)
    if fmt not in fig.canvas.get_supported_filetypes():
        raise NowcastError(f"unsupported image format {fmt!r}", path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi)
    # keep the layout just written: a later draw (a caller's, a test's) then shows exactly the saved picture
    fig.set_layout_engine("none")
    return path


def _values(field) -> np.ndarray:
    return np.asarray(getattr(field, "values", field), dtype=np.float32)


def _coord(field, name, given):
    if given is not None:
        return np.asarray(given, dtype=float)
    coords = getattr(field, "coords", None)
    if coords is not None and name in coords and coords[name].ndim == 1:
        c = coords[name]
        factor = 1000.0 if str(c.attrs.get("units", "m")).strip().lower() in ("km", "kilometre", "kilometer") else 1.0
        return np.asarray(c.values, dtype=float) * factor
    return None


def _extent_origin(x, y, shape):
    """imshow extent (km) and origin so that larger y is up, or (None, 'upper') for pixel axes."""
    if x is None or y is None:
        return None, "upper"
    ny, nx = shape
    if len(x) != nx or len(y) != ny:
        raise NowcastError(f"coordinates ({len(y)} y, {len(x)} x) do not match the field {shape}")
    dx = (x[-1] - x[0]) / (nx - 1) if nx > 1 else 1000.0
    dy = (y[-1] - y[0]) / (ny - 1) if ny > 1 else -1000.0
    left, right = (x[0] - dx / 2) / 1000.0, (x[-1] + dx / 2) / 1000.0
    if dy < 0:  # y decreases with the row: row 0 is north, draw it at the top
        return (left, right, (y[-1] + dy / 2) / 1000.0, (y[0] - dy / 2) / 1000.0), "upper"
    return (left, right, (y[0] - dy / 2) / 1000.0, (y[-1] + dy / 2) / 1000.0), "lower"


def _times(da):
    coords = getattr(da, "coords", None)
    if coords is not None and "time" in coords:
        t = np.asarray(coords["time"].values)
        if np.issubdtype(t.dtype, np.datetime64):
            return t.astype("datetime64[ns]")
    return None


def _step_minutes(inputs, forecast) -> float:
    """The forecast's regular step (else the inputs'), in minutes; the default without times."""
    for da in (forecast, inputs):
        t = _times(da)
        if t is not None and len(t) > 1:
            return timeaxis.minutes(timeaxis.regular_step(t))
    return DEFAULT_STEP_MINUTES


def _in_units(dbz: np.ndarray, units: str) -> np.ndarray:
    """A dBZ field as drawn: dBZ as is, or rain rate in mm/h (Marshall-Palmer; NaN stays NaN)."""
    return dbz if units == "dBZ" else dbz_to_rainrate(dbz).astype(np.float32)


def plot_frame(ax, field, x=None, y=None, title=None, colorbar: bool = False, units: str = "dBZ"):
    """Draw one dBZ field on ``ax`` with the radar colour scale; returns the AxesImage.

    x, y: pixel-centre coordinates in metres (default: the field's own ``x``/``y`` when it is a DataArray);
    the axes are then in km, north up.  Without coordinates the axes are in pixels.
    units: "dBZ", or "mm/h" to draw the field as rain rate (Marshall-Palmer) on the rain-rate scale.
    """
    check_units(units)
    data = _values(field)
    if data.ndim != 2:
        raise NowcastError(f"plot_frame needs a 2-D field, got shape {data.shape}")
    xs, ys = _coord(field, "x", x), _coord(field, "y", y)
    extent, origin = _extent_origin(xs, ys, data.shape)
    cmap, norm = reflectivity_cmap(units)
    im = ax.imshow(np.ma.masked_invalid(_in_units(data, units)), cmap=cmap, norm=norm, origin=origin, extent=extent,
                   interpolation="nearest")
    if extent is None:
        ax.set_xlabel("column (pixels)")
        ax.set_ylabel("row (pixels)")
    else:
        ax.set_xlabel("x (km)")
        ax.set_ylabel("y (km)")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize="medium")
    if colorbar:
        add_colorbar(ax.figure, im, ax=ax, units=units)
    return im


def _lead_indices(n: int, max_leads: int | None) -> list[int]:
    """Evenly spaced leads ending with the last: every k-th lead, k the smallest stride that fits.

    10 leads in 5 panels: leads 2, 4, 6, 8, 10 (+10 ... +50 min at 5 min), never an irregular pick.
    """
    if max_leads is None or n <= max_leads:
        return list(range(n))
    stride = math.ceil(n / max(1, max_leads))
    return list(range(n - 1, -1, -stride))[::-1]


def _when(t) -> str:
    """'2016-09-28 17:40 UTC'."""
    return np.datetime64(t, "s").astype(_dt.datetime).strftime("%Y-%m-%d %H:%M UTC")


def _reference_time(inputs, forecast):
    """The time of the last observation: the forecast's reference time, else the last input time."""
    coords = getattr(forecast, "coords", None)
    if coords is not None and "forecast_reference_time" in coords:
        t = np.asarray(coords["forecast_reference_time"].values)
        if np.issubdtype(t.dtype, np.datetime64) and t.ndim == 0:
            return t.astype("datetime64[ns]")
    t_in = _times(inputs)
    return None if t_in is None else t_in[-1]


def _forecast_times(inputs, forecast, step: float):
    t_fc = _times(forecast)
    t_ref = _reference_time(inputs, forecast)
    if t_fc is None and t_ref is not None:
        t_fc = t_ref + np.arange(1, _values(forecast).shape[0] + 1) * np.timedelta64(int(round(step * 60e9)), "ns")
    return t_fc, t_ref


def _minutes_between(t, ref) -> float:
    return float((t - ref) / np.timedelta64(1, "m"))


def _method_label(forecast, method_name):
    if method_name:
        return str(method_name)
    return str(getattr(forecast, "attrs", {}).get("method", "forecast"))


# ---------------------------------------------------------------------------------------------------------
# geography (optional: a graticule when the grid mapping is known, map lines when cartopy data are local)


GRATICULE_COLOR = "0.35"
MAP_LINE_COLOR = "0.15"


def _geography(field) -> dict | None:
    """Graticule and map lines in the plot's km coordinates, or None when the grid has no known geography."""
    xs, ys = _coord(field, "x", None), _coord(field, "y", None)
    ll = geo.latlon(field) if xs is not None and ys is not None else None
    if ll is None:
        return None
    lat, lon = ll
    # The graticule is smooth: contouring a coarse copy is as exact on screen and much faster on big grids.
    stride = max(1, max(lat.shape) // 150)
    xk, yk = np.meshgrid(xs[::stride] / 1000.0, ys[::stride] / 1000.0)
    return {
        "x": xk, "y": yk,
        "lat": lat[::stride, ::stride], "lon": lon[::stride, ::stride],
        "levels": geo.graticule_lines(lat, lon),
        "map_lines": [line / 1000.0 for line in geo.map_lines(field)],
    }


def _draw_geography(ax, geog: dict | None, labels: bool = True, top: bool = True, right: bool = True) -> None:
    """Dashed lat/lon lines and coastlines/borders over the image, limits unchanged.  With ``labels`` the
    lines are labelled in degrees outside the frame, where they cross it: longitudes along the top edge
    (``top``), latitudes along the right edge (``right``), never on the echoes."""
    if geog is None:
        return
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for name in ("lat", "lon"):
        levels = geog["levels"][name]
        if len(levels) == 0:
            continue
        cs = ax.contour(geog["x"], geog["y"], geog[name], levels=levels, colors=GRATICULE_COLOR,
                        linewidths=0.6, linestyles="--", alpha=0.8)
        cs.set_gid(f"graticule-{name}")
    for line in geog["map_lines"]:
        ax.plot(line[:, 0], line[:, 1], color=MAP_LINE_COLOR, linewidth=0.6, gid="map-line")
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    if labels and top:
        _edge_labels(ax, geog, "lon")
    if labels and right:
        _edge_labels(ax, geog, "lat")


GRATICULE_LABEL_GAP = 0.22  # neighbouring edge labels at least this fraction of the edge apart


def _edge_crossings(coord: np.ndarray, values: np.ndarray, levels) -> list[tuple[float, float]]:
    """(position along the edge, level) where `values` (sampled at `coord` along one edge) cross a level."""
    order = np.argsort(coord)
    coord, values = coord[order], values[order]
    found = []
    for level in levels:
        d = values - level
        ok = np.isfinite(d[:-1]) & np.isfinite(d[1:])
        idx = np.nonzero(ok & (np.sign(d[:-1]) != np.sign(d[1:])))[0]
        if len(idx):
            i = idx[0]
            frac = d[i] / (d[i] - d[i + 1]) if d[i] != d[i + 1] else 0.0
            found.append((float(coord[i] + frac * (coord[i + 1] - coord[i])), float(level)))
    return sorted(found)


def _edge_labels(ax, geog: dict, name: str) -> None:
    """Degree labels of the `name` lines where they cross the top edge (lon) or the right edge (lat), as the
    tick labels of a secondary axis outside the frame; labels too close to the previous one are left out."""
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    gx, gy, field = geog["x"], geog["y"], geog[name]
    if name == "lon":  # the grid row nearest the top edge
        row = int(np.argmin(np.abs(gy[:, 0] - max(ylim))))
        crossings, span = _edge_crossings(gx[row], field[row], geog["levels"][name]), xlim
    else:  # the grid column nearest the right edge
        col = int(np.argmin(np.abs(gx[0] - max(xlim))))
        crossings, span = _edge_crossings(gy[:, col], field[:, col], geog["levels"][name]), ylim
    length = abs(span[1] - span[0])
    kept = []
    for pos, level in crossings:
        if min(span) <= pos <= max(span) and (not kept or pos - kept[-1][0] >= GRATICULE_LABEL_GAP * length):
            kept.append((pos, level))
    if not kept:
        return
    sec = ax.secondary_xaxis("top") if name == "lon" else ax.secondary_yaxis("right")
    sec.set_gid(f"graticule-labels-{name}")
    axis = sec.xaxis if name == "lon" else sec.yaxis
    axis.set_ticks([p for p, _ in kept], labels=[geo.format_degrees(v, name) for _, v in kept])
    sec.tick_params(labelsize="x-small", length=2, colors=GRATICULE_COLOR, labelcolor="0.15")


def _legend_handles(geog: dict | None, units: str = "dBZ") -> list:
    handles = legend_handles(units)
    if geog is not None:
        handles.append(Line2D([], [], color=GRATICULE_COLOR, linestyle="--", linewidth=0.8, label="latitude / longitude"))
    if geog is not None and geog["map_lines"]:
        handles.append(Line2D([], [], color=MAP_LINE_COLOR, linewidth=0.8, label="coast / borders"))
    return handles


# ---------------------------------------------------------------------------------------------------------
# forecast panels and animation


def plot_forecast_panels(
    inputs,
    forecast,
    path,
    observed=None,
    n_inputs_shown: int = 5,
    max_leads: int | None = None,
    method_name: str | None = None,
    dpi: float = 100,
    panel_inches: float = 2.6,
    overwrite: bool = True,
    geography: bool = True,
    units: str = "dBZ",
) -> Figure:
    """Grid of panels: last inputs (top row), forecasts (middle), observations at the same times (bottom).

    inputs (T, y, x) and forecast (n, y, x) in dBZ, DataArrays with ``time`` coordinates (plain arrays work
    too: lead times then assume 5-minute steps).  observed (m, y, x), optional, is matched to the forecast
    frame by frame (same index = same valid time).  The last ``n_inputs_shown`` inputs are all drawn; leads
    are evenly spaced and end with the last one: at most ``max_leads`` of them (default: as many as inputs
    shown, so that no slot is empty).  Each panel's title gives kind, minutes from the last observation and
    time of day; the figure title names the method and the date.  With a known grid mapping a lat/lon
    graticule is drawn, labelled outside the frames (``geography=False`` leaves it out).  units: "dBZ", or
    "mm/h" to draw rain rate on the rain-rate scale.  One colour bar; the legend shows the no-data grey and
    the no-echo white.  Returns the Figure; the image is written to ``path``.
    """
    check_units(units)
    inp, fc = _values(inputs), _values(forecast)
    if inp.ndim != 3 or fc.ndim != 3:
        raise NowcastError(f"inputs and forecast must be (time, y, x), got {inp.shape} and {fc.shape}")
    if inp.shape[0] == 0 or fc.shape[0] == 0:
        raise NowcastError("nothing to draw: no input or no forecast frame")
    obs = None if observed is None else _values(observed)
    method = _method_label(forecast, method_name)
    shown_in = list(range(max(0, inp.shape[0] - max(1, n_inputs_shown)), inp.shape[0]))
    leads = _lead_indices(fc.shape[0], len(shown_in) if max_leads is None else max_leads)
    ncols = max(len(leads), len(shown_in))
    nrows = 2 + (obs is not None)
    aspect = min(max(inp.shape[1] / inp.shape[2], 0.5), 2.0)  # panel height / width, within reason
    # the panels get ~85 % of the width (colour bar, labels): size the rows to match, without blank bands
    fig = _new_figure(ncols * panel_inches + 1.6, nrows * (0.85 * panel_inches * aspect + 0.6) + 1.0, dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)

    step = _step_minutes(inputs, forecast)
    t_in = _times(inputs)
    t_fc, t_ref = _forecast_times(inputs, forecast, step)
    geog = _geography(_frame(inputs, -1)) if geography else None

    def lead_minutes(i):
        return _minutes_between(t_fc[i], t_ref) if t_fc is not None and t_ref is not None else (i + 1) * step

    def title(kind, minutes, t):
        return f"{kind} {minutes:+g} min" + (f"\n{_clock(t)}" if t is not None else "")

    panels = []  # (row, col, field, title)
    for col, k in enumerate(shown_in):
        ago = _minutes_between(t_in[k], t_ref) if t_in is not None and t_ref is not None else (k - inp.shape[0] + 1) * step
        panels.append((0, col, _frame(inputs, k), title("Observed", ago, None if t_in is None else t_in[k])))
    rows = [(1, forecast, fc.shape[0], "Forecast")] + ([(2, observed, obs.shape[0], "Observed")] if obs is not None else [])
    for row, source, available, kind in rows:
        for col, i in enumerate(leads):
            if i < available:
                t = None if t_fc is None else t_fc[i]
                panels.append((row, col, _frame(source, i), title(kind, lead_minutes(i), t)))
    _draw_panels(fig, axes, panels, geog, units)
    start = f" from {_when(t_ref)}" if t_ref is not None else ""
    fig.suptitle(f"{method} nowcast{start}, every {step:g} min", fontsize="large")
    _save(fig, path, overwrite)
    return fig


def _draw_panels(fig, axes, panels, geog: dict | None, units: str) -> None:
    """Each (row, col, field, title) panel in its place, the unused ones hidden, graticule labels on the
    outer panels, one colour bar and the legend."""
    nrows = axes.shape[0]
    last_col = {row: max(c for r, c, _, _ in panels if r == row) for row in range(nrows) if any(r == row for r, *_ in panels)}
    im = None
    for row, col, field, text in panels:
        ax = axes[row, col]
        im = plot_frame(ax, field, title=text, units=units)
        _draw_geography(ax, geog, top=row == 0, right=col == last_col.get(row))
    drawn = {(row, col) for row, col, _, _ in panels}
    for (row, col), ax in np.ndenumerate(axes):
        if (row, col) not in drawn:
            ax.set_visible(False)
    for ax in axes.flat:  # keep the grid readable: labels only on the outer panels
        if ax.get_visible():
            ax.label_outer()
    visible = [ax for ax in axes.flat if ax.get_visible()]
    add_colorbar(fig, im, ax=visible, shrink=0.8, units=units)
    handles = _legend_handles(geog, units)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small", frameon=False)


def _clock(t) -> str:
    """'17:40 UTC'."""
    return np.datetime64(t, "s").astype(_dt.datetime).strftime("%H:%M UTC")


def _frame(da, i):
    """Frame i of a (time, y, x) DataArray or array, keeping x/y coordinates where there are some."""
    if hasattr(da, "isel") and hasattr(da, "dims") and len(da.dims) == 3:
        return da.isel({da.dims[0]: i})
    return np.asarray(da)[i]


GIF_MIN_PIXELS = 420  # the long side of the radar image in a GIF frame, in screen pixels
GIF_MAX_PIXELS = 760
DEFAULT_INPUTS_SHOWN = 5
GIF_MIN_WIDTH = 640  # screen pixels


def _gif_figsize(shape, dpi: float) -> tuple[float, float]:
    """Figure inches giving the image about one screen pixel per grid cell, within sensible bounds."""
    ny, nx = shape
    long_side = min(max(ny, nx, GIF_MIN_PIXELS), GIF_MAX_PIXELS)
    img_w, img_h = long_side * nx / max(ny, nx), long_side * ny / max(ny, nx)
    # room for the colour bar (right), axis labels (left, bottom), titles and legend; at least as wide as the
    # figure title and the legend need
    return max(img_w + 190, GIF_MIN_WIDTH) / dpi, (img_h + 200) / dpi


def animate_forecast(
    inputs,
    forecast,
    path,
    fps: float = 2,
    method_name: str | None = None,
    dpi: float = 100,
    overwrite: bool = True,
    n_inputs: int | None = None,
    geography: bool = True,
    units: str = "dBZ",
) -> Figure:
    """GIF: the last observed frames (those a forecast starts from), then the forecast frames.

    ``n_inputs`` observed frames are shown (default 5, fewer if there are fewer): not the whole history
    a long input file holds.  The GIF has n_inputs + len(forecast) frames; each says observed or forecast
    (with the lead; the figure title names the method) and its date/time.  Frames are about one screen pixel per grid cell, between
    420 and 760 pixels on the long side.  units: "dBZ", or "mm/h" (rain rate).  Returns the Figure (showing
    the last frame).
    """
    from matplotlib.animation import PillowWriter

    check_units(units)
    inp, fc = _values(inputs), _values(forecast)
    if inp.ndim != 3 or fc.ndim != 3:
        raise NowcastError(f"inputs and forecast must be (time, y, x), got {inp.shape} and {fc.shape}")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise NowcastError("animations are written as GIF: use a .gif file name", path)
    if n_inputs is not None and n_inputs < 0:
        raise NowcastError(f"n_inputs must be 0 or more, got {n_inputs}")
    n_in = min(inp.shape[0], DEFAULT_INPUTS_SHOWN if n_inputs is None else n_inputs)
    method = _method_label(forecast, method_name)
    step = _step_minutes(inputs, forecast)
    t_in = _times(inputs)
    t_fc, t_ref = _forecast_times(inputs, forecast, step)

    frames = []
    for k in range(inp.shape[0] - n_in, inp.shape[0]):
        ago = _minutes_between(t_in[k], t_ref) if t_in is not None and t_ref is not None else (k - inp.shape[0] + 1) * step
        frames.append((_frame(inputs, k), f"Observed {ago:+g} min", None if t_in is None else t_in[k], False))
    for i in range(fc.shape[0]):
        lead = _minutes_between(t_fc[i], t_ref) if t_fc is not None and t_ref is not None else (i + 1) * step
        frames.append((_frame(forecast, i), f"Forecast +{lead:g} min", None if t_fc is None else t_fc[i], True))

    if not frames:
        raise NowcastError("nothing to animate: no input or forecast frame")
    fig = _new_figure(*_gif_figsize(fc.shape[1:], dpi), dpi)
    ax = fig.add_subplot()
    geog = _geography(_frame(forecast, 0)) if geography else None
    im = plot_frame(ax, frames[0][0], title="Forecast +00 min\n0000-00-00 00:00 UTC", units=units)
    _draw_geography(ax, geog)
    add_colorbar(fig, im, ax=ax, shrink=0.9, units=units)
    handles = _legend_handles(geog, units)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small", frameon=False)
    fig.suptitle(f"{method} nowcast" + (f" from {_when(t_ref)}" if t_ref is not None else ""))

    fig.canvas.draw()  # lay out once with a representative title, then keep that layout for every frame
    fig.set_layout_engine("none")
    writer = PillowWriter(fps=fps)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with writer.saving(fig, str(tmp), dpi):
            for data, kind, t, is_forecast in frames:
                im.set_data(np.ma.masked_invalid(_in_units(_values(data), units)))
                text = kind if t is None else f"{kind}\n{_when(t)}"
                ax.set_title(text, fontsize="medium", color="#b00020" if is_forecast else "black")
                writer.grab_frame()
    return fig


# ---------------------------------------------------------------------------------------------------------
# optical-flow motion field


def _block_centres(n: int, every: int) -> np.ndarray:
    """Centres, in fractional pixel indices, of the blocks `_block_mean` averages (edge blocks may be short)."""
    starts = np.arange(0, n, every)
    ends = np.minimum(starts + every, n)
    return (starts + ends) / 2.0 - 0.5


def _time_step_minutes(field, given) -> float | None:
    if given is not None:
        return float(given)
    seconds = getattr(field, "attrs", {}).get("time_step_seconds")
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return None
    return seconds / 60.0 if np.isfinite(seconds) and seconds > 0 else None


def _frame_time(field):
    coords = getattr(field, "coords", None)
    if coords is not None and "time" in coords and coords["time"].ndim == 0:
        t = np.asarray(coords["time"].values)
        if np.issubdtype(t.dtype, np.datetime64):
            return t
    return None


def speed_kmh(pixels_per_step: float, pixel_m: float, step_minutes: float) -> float:
    """Speed in km/h of a displacement of ``pixels_per_step`` grid cells of ``pixel_m`` metres each step."""
    return pixels_per_step * pixel_m / 1000.0 / (step_minutes / 60.0)


def plot_motion_field(
    frame_da,
    velocity,
    path,
    title: str | None = None,
    overwrite: bool = True,
    every: int | None = None,
    time_step_minutes: float | None = None,
    dpi: float = 100,
    geography: bool = True,
) -> Figure:
    """Arrows of an optical-flow field over a reflectivity image, pointing where the echoes move.

    velocity (2, H, W) in pixels per time step, the pysteps convention: [0] along columns (x, to the right),
    [1] along rows (downwards on the image).  frame_da (H, W) in dBZ; its x/y coordinates (if any) put the
    image in km, north up, with a graticule when the grid mapping is known.  Arrows are block means over
    ``every`` x ``every`` pixels (default: about 25 across).  The key gives pixels per step and, when the
    pixel size (metres) and the time step (``time_step_minutes`` or the frame's ``time_step_seconds``)
    are known, km/h.  The Quiver (gid "motion", in ``fig.axes[0].collections``) holds U = rightward and
    V = upward-on-screen components in pixels per step (V is along +row on pixel axes, which point down).
    """
    data = _values(frame_da)
    vel = np.asarray(velocity, dtype=float)
    if data.ndim != 2:
        raise NowcastError(f"plot_motion_field needs a 2-D reflectivity frame, got shape {data.shape}")
    if vel.shape != (2,) + data.shape:
        raise NowcastError(f"velocity must have shape (2, {data.shape[0]}, {data.shape[1]}) like the frame, got {vel.shape}")
    H, W = data.shape
    every = max(1, int(every) if every is not None else int(round(max(H, W) / 25.0)))
    xs, ys = _coord(frame_da, "x", None), _coord(frame_da, "y", None)
    km_mode = xs is not None and ys is not None

    u, v = _block_mean(vel[0], every), _block_mean(vel[1], every)
    cols, rows = np.meshgrid(_block_centres(W, every), _block_centres(H, every))
    if km_mode:
        dx = (xs[-1] - xs[0]) / (W - 1) if W > 1 else 1000.0
        dy = (ys[-1] - ys[0]) / (H - 1) if H > 1 else -1000.0
        px, py = (xs[0] + cols * dx) / 1000.0, (ys[0] + rows * dy) / 1000.0
        # +column is +x when x grows with the column; +row is -y on the usual north-up grid (y falls with the row)
        U, V = u * np.sign(dx), v * np.sign(dy)
        cell = abs(dx) / 1000.0  # km of plot per pixel of motion
    else:
        px, py = cols, rows
        U, V = u, v  # pixel axes: the row axis points down, so +V is drawn downwards
        cell = 1.0

    step_min = _time_step_minutes(frame_da, time_step_minutes)
    t = _frame_time(frame_da)
    if title is None:
        title = "Motion field (optical flow)" + (f"\n{_when(t)}" if t is not None else "")
    fig = _new_figure(7.0, 5.6 * min(max(H / W, 0.6), 1.6) + 1.4, dpi)
    ax = fig.add_subplot()
    im = plot_frame(ax, frame_da if km_mode else data, title=" ")  # an empty title line keeps room for the key
    fig.suptitle(title)
    if geography:
        _draw_geography(ax, _geography(frame_da))
    add_colorbar(fig, im, ax=ax, shrink=0.85)

    speeds = np.hypot(U, V)
    speeds = speeds[np.isfinite(speeds)]
    typical = float(np.percentile(speeds, 95)) if speeds.size else 0.0
    typical = typical if typical > 0 else 1.0
    # scale: pixels per step of motion per plot unit of length; the typical arrow is ~0.9 block long
    scale = typical / (0.9 * every * cell)
    q = ax.quiver(px.ravel(), py.ravel(), np.ma.masked_invalid(U).ravel(), np.ma.masked_invalid(V).ravel(),
                  color="black", angles="xy", scale_units="xy", scale=scale,
                  width=0.004, headwidth=3.5, headlength=4, pivot="tail")
    q.set_gid("motion")
    key = _nice(typical)
    label = f"{key:g} pixels per step"
    pixel_m = geo.grid_spacing_m(frame_da) if km_mode else None
    if pixel_m is not None and step_min is not None:
        label += f" = {speed_kmh(key, pixel_m, step_min):.3g} km/h"
    ax.quiverkey(q, 0.02, 1.025, key, label, labelpos="E", coordinates="axes", color="black")
    _save(fig, path, overwrite)
    return fig


# ---------------------------------------------------------------------------------------------------------
# scores


def _threshold_entry(table: dict, threshold):
    """Look a threshold up in a dict keyed by strings ("30", "30.0") or numbers."""
    t = float(threshold)
    for key in (f"{t:g}", str(threshold), str(t), str(int(t)) if t.is_integer() else None, threshold, t):
        if key is not None and key in table:
            return table[key]
    return None


def _as_float_list(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _lead_step(raw_step) -> tuple[float, str]:
    """(minutes per lead, "min"); sequences pooled with different time steps: (1, "frames")."""
    if isinstance(raw_step, (list, tuple)):
        # sequences with different time steps were pooled: lead minutes differ, so count frames
        steps = {float(s) for s in raw_step}
        return (steps.pop(), "min") if len(steps) == 1 else (1.0, "frames")
    return float(raw_step), "min"


def _thresholds_in(methods: dict, scores) -> list:
    """The thresholds the first categorical score holds (for a result that does not list them)."""
    for res in methods.values():
        for s in scores:
            table = res.get(f"{s}_per_lead")
            if isinstance(table, dict):
                return sorted(table, key=float)
    return []


def _most_leads(methods: dict, scores) -> int:
    n_leads = 1
    for res in methods.values():
        for s in scores:
            table = res.get(f"{s}_per_lead")
            for vals in (table.values() if isinstance(table, dict) else [table] if table is not None else []):
                n_leads = max(n_leads, len(vals or []))
    return n_leads


def plot_score_curves(
    result,
    path,
    scores=("csi", "pod", "far"),
    dpi: float = 100,
    overwrite: bool = True,
) -> Figure:
    """Score against lead time: one row per score, one column per threshold, one line per method.

    ``result`` is an ``evaluate.EvaluationResult`` or its JSON layout (``to_dict()``, e.g. a saved
    ``nowcast evaluate --json`` file): ``["results"][method][f"{score}_per_lead"]`` is either a dict
    {threshold: [value per lead]} (categorical scores) or a plain list (e.g. MSE); None is a gap.
    Lead minutes are (i + 1) * ``["time_step_minutes"]`` (5 when absent).
    """
    if hasattr(result, "to_dict"):  # typed result: read it through the layout a saved JSON file has
        result = result.to_dict()
    methods = result.get("results") or {}
    if not methods:
        raise NowcastError("the result has no methods to plot")
    step, lead_unit = _lead_step(result.get("time_step_minutes") or DEFAULT_STEP_MINUTES)
    thresholds = list(result.get("thresholds_dbz") or []) or _thresholds_in(methods, scores)
    ncols = max(len(thresholds), 1)
    rows = list(scores)
    n_leads = _most_leads(methods, scores)
    fig = _new_figure(3.6 * ncols + 0.5, 2.8 * len(rows) + 0.6, dpi)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    handles = {}
    for r, score in enumerate(rows):
        bounded = score.lower() in {"csi", "pod", "far", "ets", "ssim", "hss", "pofd", "sr"}
        for c in range(ncols):
            ax = axes[r, c]
            plotted = False
            for m, (name, res) in enumerate(methods.items()):
                table = res.get(f"{score}_per_lead")
                if isinstance(table, dict):
                    if not thresholds:
                        continue
                    values = _threshold_entry(table, thresholds[c])
                elif table is not None and c == 0:
                    values = table
                else:
                    values = None
                if values is None:
                    continue
                vals = _as_float_list(values)
                lead = (np.arange(len(vals)) + 1) * step
                (line,) = ax.plot(lead, vals, marker="o", markersize=3, label=name, color=f"C{m}")
                handles.setdefault(name, line)
                plotted = plotted or bool(np.isfinite(vals).any())
            is_cat = any(isinstance(res.get(f"{score}_per_lead"), dict) for res in methods.values())
            if not plotted:
                if c > 0 and not is_cat:  # a score without thresholds needs one panel only
                    ax.set_visible(False)
                    continue
                ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes, color="0.4")
            label = score.upper()
            if is_cat and thresholds:
                ax.set_title(f"{label} at \u2265 {float(thresholds[c]):g} dBZ", fontsize="medium")
            else:
                ax.set_title(label, fontsize="medium")
            if bounded:
                ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(0.5 * step, (n_leads + 0.5) * step)
            ax.set_xlabel(f"Lead time ({lead_unit})")
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncols=min(len(handles), 5))
    fig.suptitle("Verification by lead time")
    _save(fig, path, overwrite)
    return fig


# ---------------------------------------------------------------------------------------------------------
# motion trend


def _block_mean(a: np.ndarray, every: int) -> np.ndarray:
    """Mean over every x every blocks (NaN ignored); partial edge blocks are averaged too."""
    h, w = a.shape
    H, W = math.ceil(h / every) * every, math.ceil(w / every) * every
    padded = np.full((H, W), np.nan)
    padded[:h, :w] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(padded.reshape(H // every, every, W // every, every), axis=(1, 3))


def _nice(v: float) -> float:
    """A round number (1, 2, 2.5, 5 x 10^k) close to v."""
    if not np.isfinite(v) or v <= 0:
        return 1.0
    e = math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**e >= v * 0.75:
            return m * 10**e
    return 10 ** (e + 1)


def _draw_arrows(ax, px, py, fields, spacing: float, key_units: str, labels) -> None:
    """Quivers of every (u, v, colour, gid) field at (px, py) with one shared scale, a key, and labels."""
    # One scale for all arrows: the longest typical arrow is drawn about one arrow spacing long.
    speeds = np.concatenate([np.hypot(a, b).ravel() for a, b, _, _ in fields])
    speeds = speeds[np.isfinite(speeds)]
    typical = float(np.percentile(speeds, 95)) if speeds.size else 0.0
    if typical <= 0:
        typical = 1.0
    scale = typical / (0.9 * spacing)  # data units of motion per data unit of length
    first = None
    for u, v, color, gid in fields:
        q = ax.quiver(
            px, py, u.ravel(), v.ravel(),
            color=color, angles="xy", scale_units="xy", scale=scale,
            width=0.004, headwidth=3.5, headlength=4, pivot="middle",
        )
        q.set_gid(gid)
        first = first or q
    key_len = _nice(typical)
    key = ax.quiverkey(first, 0.78, 1.025, key_len, f"{key_len:g} {key_units}", labelpos="E", coordinates="axes",
                       color=TREND_COLOR, fontproperties={"size": "small"})
    key.set_gid("arrow-key")
    handles = [Line2D([], [], color=color, marker=r"$\rightarrow$", markersize=14, linestyle="none", label=label)
               for (_, _, color, _), label in zip(fields, labels)]
    ax.figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def _trend_figure(data, xs, ys, title: str | None, dpi: float):
    """(figure, axes) with the reflectivity drawn, its colour bar and the title; room for the arrow key."""
    fig = _new_figure(7.0, 6.2, dpi)
    ax = fig.add_subplot()
    im = plot_frame(ax, data, x=xs, y=ys)
    ax.set_title(" ", fontsize="small")  # an empty line above the picture: the arrow key's place in the layout
    if title:
        fig.suptitle(title)
    add_colorbar(fig, im, ax=ax, shrink=0.85)
    return fig, ax


def _arrow_centres(grid_shape, field_shape, every: int):
    """(columns, rows) of the arrows, meshed: the centres of the every x every blocks of the motion grid, in
    the field's fractional pixel indices."""
    (h, w), (H, W) = grid_shape, field_shape
    bh, bw = _block_mean(np.ones((h, w)), every).shape
    j = (np.arange(bw) * every + (np.minimum(np.arange(bw) * every + every, w) - np.arange(bw) * every) / 2.0)
    i = (np.arange(bh) * every + (np.minimum(np.arange(bh) * every + every, h) - np.arange(bh) * every) / 2.0)
    col = j * (W / w) - 0.5
    row = i * (H / h) - 0.5
    return np.meshgrid(col, row)


def _arrow_places(xs, ys, field_shape, cc, rr, block_pixels: float, units_label: str):
    """(x, y, spacing, the key's unit) of the arrows: in km with coordinates (xs None: in pixels).
    block_pixels: the width of an arrow's block in field pixels."""
    if xs is None:
        return cc.ravel(), rr.ravel(), block_pixels, units_label
    H, W = field_shape
    left, right, _, _ = _extent_origin(xs, ys, field_shape)[0]
    px = (xs[0] + (cc.ravel()) * ((xs[-1] - xs[0]) / max(W - 1, 1))) / 1000.0
    py = (ys[0] + (rr.ravel()) * ((ys[-1] - ys[0]) / max(H - 1, 1))) / 1000.0
    spacing = block_pixels * abs(right - left) / W
    return px, py, spacing, "km per step" if units_label == "pixels per step" else units_label


def plot_trend(
    field_dbz,
    dx,
    dy,
    path,
    x=None,
    y=None,
    every: int | None = None,
    transient_dx=None,
    transient_dy=None,
    units_label: str = "pixels per step",
    title: str | None = "Motion trend",
    dy_along: str = "y",
    dpi: float = 100,
    overwrite: bool = True,
    labels: tuple[str, str] = ("trend", "transient"),
) -> Figure:
    """Reflectivity image with arrows of a motion field (e.g. MotionRNN's trend momentum).

    dx, dy: 2-D motion components, on the field's grid or on any coarser grid covering the same domain
    (e.g. the network's feature grid), in ``units_label`` (default pixels per step).
      * dx is along +x: east, to the right.
      * dy (``dy_along="y"``, the default) is along +y: north, so dy > 0 points *up* on the picture;
        with ``dy_along="row"`` dy is along +row (south, the array/optical-flow convention) and points down.
    Arrows are block means over ``every`` x ``every`` cells (default: about 20 arrows across).
    With coordinates (x, y in metres, or the field's own) the axes are in km and, when the unit is pixels
    per step, arrows and the key are converted to km per step; otherwise the axes are pixels.
    transient_dx/dy: optional second field (same conventions) drawn in another colour with the same scale.
    title: the figure's title (above the picture; the arrow key sits at the picture's top right).
    labels: the legend's names, below the picture, for the first and second field (and their quivers' gids).
    Returns the Figure; the first Quiver (gid "trend") is in ``fig.axes[0].collections``: its U/V hold
    the plotted components (U east; V up on the image in km mode, V along +row in pixel mode).
    """
    if dy_along not in ("y", "row"):
        raise NowcastError(f"dy_along must be 'y' or 'row', got {dy_along!r}")
    data = _values(field_dbz)
    ddx, ddy = np.asarray(dx, dtype=float), np.asarray(dy, dtype=float)
    if data.ndim != 2 or ddx.shape != ddy.shape or ddx.ndim != 2:
        raise NowcastError(f"plot_trend needs a 2-D field and 2-D dx, dy of one shape, got {data.shape}, {ddx.shape}, {ddy.shape}")
    xs, ys = _coord(field_dbz, "x", x), _coord(field_dbz, "y", y)
    km_mode = xs is not None and ys is not None
    W = data.shape[1]
    h, w = ddx.shape
    if every is None:
        every = max(1, int(round(max(h, w) / 20.0)))
    every = max(1, int(every))

    fig, ax = _trend_figure(data, xs, ys, title, dpi)
    cc, rr = _arrow_centres((h, w), data.shape, every)

    # Components in plot space.  "Up" is +y in km mode (extent puts larger y on top); in pixel mode the
    # axis is the row, which increases downwards.
    def to_plot(u, v):
        u, v = _block_mean(u, every), _block_mean(v, every)
        north_up = v if dy_along == "y" else -v  # v along +y (north)
        if km_mode:
            px_x = abs(xs[1] - xs[0]) / 1000.0 if len(xs) > 1 else 1.0
            px_y = abs(ys[1] - ys[0]) / 1000.0 if len(ys) > 1 else 1.0
            if units_label == "pixels per step":
                return u * px_x, north_up * px_y
            return u, north_up
        return u, -north_up  # rows increase southwards

    px, py, spacing, key_units = _arrow_places(xs if km_mode else None, ys, data.shape, cc, rr, every * (W / w),
                                               units_label)

    U, V = to_plot(ddx, ddy)
    fields = [(U, V, TREND_COLOR, labels[0])]
    if transient_dx is not None and transient_dy is not None:
        tU, tV = to_plot(np.asarray(transient_dx, float), np.asarray(transient_dy, float))
        fields.append((tU, tV, TRANSIENT_COLOR, labels[1]))

    _draw_arrows(ax, px, py, fields, spacing, key_units, labels)
    _save(fig, path, overwrite)
    return fig
