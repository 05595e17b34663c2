"""The learned motion trend of a MotionGRU as displacement vectors on the radar grid.

MotionRNN's MotionGRU keeps, per position of its encoded grid, 9 sampling offsets (one per tap of a 3x3
deformable convolution; layout in ``nowcast.nn.motiongru``): the filter F = F' + D, with D the trend
momentum and F' the transient variation. This module turns them into one arrow per encoded cell:

* mean over the 9 taps of the (dy, dx) offset, in encoded-grid pixels;
* times ``patch_size * 2`` (patches, then the MotionGRU encoder's stride 2) = radar pixels per time step;
* negated: the warp samples FROM position + offset, so the content it produces has moved by -offset.
  (``tests/test_trend.py`` checks this with ``deform_warp`` itself.)

Steps. The network runs one recurrent step per frame it reads: step N (1-based) reads input frame N
for N <= input_frames, and its own forecast of frame N after that. The default step, "last", is the
step that reads the last observed frame (N = input_frames): the newest state that is still driven by
observations only. Steps up to input_frames + output_frames - 1 (the model's trained rollout) can be
asked for; the trend at step 1 is always zero (D starts at zero and lags F by one step).

Vectors (``trend_vectors``) are an ``xarray.Dataset`` with ``dx`` along +x and ``dy`` along +y of the
input grid, in grid cells per time step, on the centres of the encoded cells (the mean coordinate of the
input pixels each one covers). Input without x/y coordinates gets x = column and y = row indices, so
there dy is along +row.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .errors import NowcastError
from .netcdf import float_field, write_dataset
from .nn.motiongru import OFFSET_CHANNELS, TAPS

FIELDS = ("trend", "filter", "transient")
FIELD_NAMES = {
    "trend": "trend momentum D",
    "filter": "motion filter F = F' + D",
    "transient": "transient variation F'",
}
VECTOR_UNITS = "grid cells per time step"
_METRIC_UNITS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0,
                 "km": 1000.0, "kilometre": 1000.0, "kilometer": 1000.0, "kilometres": 1000.0, "kilometers": 1000.0}


# ---------------------------------------------------------------------------------------------------------
# pure conversion


def motion_to_vectors(motion, patch: int, stride: int, height: int | None = None,
                      width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-tap offsets (18, h, w) -> (d_col, d_row), the content displacement in input pixels per step.

    d_col is along +column (right), d_row along +row (down). Each is minus the tap-mean offset times
    ``patch * stride``. With ``height``/``width`` (the input frame's size) the encoded grid is cut to the
    ceil(height / (patch * stride)) x ceil(width / (patch * stride)) cells that cover the frame (the
    network pads frames up to a multiple).
    """
    m = np.asarray(motion, dtype=np.float64)
    if m.ndim != 3 or m.shape[0] != OFFSET_CHANNELS:
        raise NowcastError(f"motion must be shaped ({OFFSET_CHANNELS}, h, w), got {m.shape}")
    cell = int(patch) * int(stride)
    if cell < 1:
        raise NowcastError(f"patch and stride must be positive, got {patch} and {stride}")
    taps = m.reshape(TAPS, 2, *m.shape[1:])
    scale = -float(cell)  # minus: content moves opposite to where the warp samples from
    d_row = taps[:, 0].mean(axis=0) * scale
    d_col = taps[:, 1].mean(axis=0) * scale
    h = m.shape[1] if height is None else -(-int(height) // cell)
    w = m.shape[2] if width is None else -(-int(width) // cell)
    if h > m.shape[1] or w > m.shape[2]:
        raise NowcastError(
            f"the motion grid {m.shape[1]} x {m.shape[2]} is too small for a {height} x {width} frame "
            f"({h} x {w} cells of {cell} pixels)"
        )
    return d_col[:h, :w], d_row[:h, :w]


def cell_centres(coord, cell: int) -> np.ndarray:
    """Mean of the coordinates each block of ``cell`` consecutive pixels covers (the last may be partial)."""
    c = np.asarray(coord, dtype=np.float64)
    n = -(-len(c) // int(cell))
    return np.array([c[i * cell:(i + 1) * cell].mean() for i in range(n)])


def _block_all_nan(frame: np.ndarray, cell: int) -> np.ndarray:
    """True for encoded cells whose covered pixels are all NaN (outside the radar's coverage)."""
    H, W = frame.shape
    h, w = -(-H // cell), -(-W // cell)
    valid = np.zeros((h * cell, w * cell), dtype=bool)
    valid[:H, :W] = np.isfinite(frame)
    return ~valid.reshape(h, cell, w, cell).any(axis=(1, 3))


# ---------------------------------------------------------------------------------------------------------
# the model side


def motion_gru_count(forecaster) -> int:
    model = getattr(forecaster, "model", None)
    grus = getattr(model, "motion_grus", None)
    return len(grus) if grus is not None else 0


def check_trend_model(forecaster, field: str = "trend") -> int:
    """NowcastError unless ``forecaster`` is a ModelForecaster with a MotionGRU; returns their number."""
    name = getattr(forecaster, "name", type(forecaster).__name__)
    if not hasattr(forecaster, "predict_with_motion"):
        raise NowcastError(f"method {name} is not a trained model; the trend needs a MotionRNN model")
    n = motion_gru_count(forecaster)
    if n == 0:
        raise NowcastError(f"model {name} has no MotionGRU; the trend needs a MotionRNN model")
    if field == "trend" and not getattr(forecaster.config, "trend", True):
        raise NowcastError(f"model {name} was built without the trend momentum (trend = false); "
                           "use --field filter")
    return n


def resolve_step(step, input_frames: int, output_frames: int) -> int:
    """The 1-based recurrent step: None or "last" = input_frames (reads the last observed frame)."""
    last = int(input_frames) + int(output_frames) - 1
    if step is None or (isinstance(step, str) and step.strip().lower() == "last"):
        return int(input_frames)
    try:
        n = int(str(step).strip()) if not isinstance(step, (int, np.integer)) else int(step)
    except ValueError:
        raise NowcastError(f"step {step!r} must be 'last' or a whole number from 1 to {last}") from None
    if not 1 <= n <= last:
        raise NowcastError(
            f"step {n} is out of range: 1 to {input_frames} read the input frames, up to {last} "
            f"the model's own forecasts"
        )
    return n


def _axis_sign(coord: np.ndarray) -> float:
    """+1 when the coordinate increases with the index, -1 when it decreases."""
    return -1.0 if len(coord) > 1 and coord[-1] < coord[0] else 1.0


def trend_vectors(forecaster, inputs, layer: int = 1, step=None, field: str = "trend",
                  transient: bool = False) -> xr.Dataset:
    """Displacement vectors of a MotionGRU's motion state on the input grid.

    forecaster: a ``nowcast.forecast.ModelForecaster`` of a MotionRNN model.
    inputs: dBZ sequence (time, y, x), a DataArray (its x/y coordinates are used) or an array; the last
    ``forecaster.input_frames`` frames are read.
    layer: which MotionGRU, 1 = the first (between blocks 1 and 2).
    step: recurrent step, "last"/None or 1-based N (see the module docstring).
    field: "trend" (D), "filter" (F) or "transient" (F').
    transient: also return F' of the same step as ``transient_dx``, ``transient_dy``.

    Returns a Dataset with ``dx`` (along +x) and ``dy`` (along +y), grid cells per time step, on (y, x) =
    the centres of the encoded cells; cells entirely outside the data (NaN) are NaN.
    """
    if field not in FIELDS:
        raise NowcastError(f"field {field!r} unknown; choose one of {', '.join(FIELDS)}")
    layer = _checked_layer(layer, check_trend_model(forecaster, field))
    cfg = forecaster.config
    T = int(forecaster.input_frames)
    step_n = resolve_step(step, T, int(cfg.output_frames))
    values = _last_inputs(inputs, T)
    H, W = values.shape[1:]

    # the rollout only has to reach the step asked for (the states are causal)
    _, motion = forecaster.predict_with_motion(values, max(1, step_n - T + 1))
    patch, stride = int(cfg.patch_size), int(cfg.encoder_stride)
    cell = patch * stride
    outside = _block_all_nan(values[-1], cell)

    def vectors(name):
        arr = motion[name][step_n - 1, layer - 1]
        d_col, d_row = motion_to_vectors(arr, patch, stride, H, W)
        d_col[outside] = np.nan
        d_row[outside] = np.nan
        return d_col, d_row

    xs, ys, x_attrs, y_attrs = _grid_coords(inputs, H, W)
    signs = (_axis_sign(xs), _axis_sign(ys))
    coords = {"y": ("y", cell_centres(ys, cell), y_attrs), "x": ("x", cell_centres(xs, cell), x_attrs)}
    fields = [("", field)] + ([("transient_", "transient")] if transient else [])
    data = {}
    for prefix, fld in fields:
        data.update(_vector_variables(prefix, *vectors(fld), signs, f" from the {FIELD_NAMES[fld]}"))
    lagrangian = "flow" in motion
    if lagrangian:  # a Lagrangian model: the optical flow it advects along, on the same cells
        flow_col, flow_row = (cell_means(motion["flow"][i], cell) for i in (0, 1))
        flow_col[outside] = np.nan
        flow_row[outside] = np.nan
        learned_col, learned_row = vectors(field)
        data.update(_vector_variables("flow_", flow_col, flow_row, signs,
                                      ": optical flow (Lucas-Kanade) the model advects along"))
        data.update(_vector_variables("total_", flow_col + learned_col, flow_row + learned_row, signs,
                                      f": optical flow plus the learned correction ({FIELD_NAMES[field]})"))
    attrs = _trend_attrs(getattr(forecaster, "name", "model"), lagrangian, layer, step_n, field, T, cell)
    times = getattr(inputs, "coords", {}).get("time") if hasattr(inputs, "coords") else None
    if times is not None and times.size >= T:
        attrs["last_input_time"] = str(np.datetime_as_string(np.asarray(times.values)[-1], unit="s"))
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _checked_layer(layer, n_gru: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= int(layer) <= n_gru:
        raise NowcastError(
            f"layer {layer!r} is out of range: the model has {n_gru} MotionGRU(s), numbered 1 to {n_gru}"
        )
    return int(layer)


def _last_inputs(inputs, T: int) -> np.ndarray:
    """The last T frames of a (time, y, x) sequence, as float32."""
    values = np.asarray(getattr(inputs, "values", inputs), dtype=np.float32)
    if values.ndim != 3:
        raise NowcastError(f"inputs must be a (time, y, x) sequence, got shape {values.shape}")
    if values.shape[0] < T:
        raise NowcastError(f"the model reads {T} input frames, got {values.shape[0]}")
    return values[-T:]


def _vector_variables(prefix: str, d_col, d_row, signs, what: str) -> dict:
    """``{prefix}dx`` and ``{prefix}dy`` along +x and +y: column and row displacements times the axes' signs.
    ``what`` ends the long names ("displacement along +x" + what)."""
    sx, sy = signs
    return {
        prefix + "dx": (("y", "x"), (sx * d_col).astype(np.float32),
                        {"units": VECTOR_UNITS, "long_name": f"displacement along +x{what}"}),
        prefix + "dy": (("y", "x"), (sy * d_row).astype(np.float32),
                        {"units": VECTOR_UNITS, "long_name": f"displacement along +y{what}"}),
    }


def _trend_attrs(name: str, lagrangian: bool, layer: int, step_n: int, field: str, T: int, cell: int) -> dict:
    return {
        "title": f"MotionRNN {FIELD_NAMES[field]} as displacement vectors",
        "frame": "lagrangian" if lagrangian else "eulerian",
        "model": name,
        "layer": layer,
        "step": step_n,
        "step_reads": f"input frame {step_n}" if step_n <= T else f"forecast frame {step_n - T} (model output)",
        "field": field,
        "input_frames": T,
        "cell_pixels": cell,
        "comment": (
            "dx, dy: where the echoes move in one time step, in grid cells of the input grid along +x and +y; "
            "minus the mean over the 9 taps of the MotionGRU sampling offsets, times patch_size * 2; "
            "positions are the centres of the model's encoded cells"
        ),
    }


def cell_means(field: np.ndarray, cell: int) -> np.ndarray:
    """Means of a (H, W) field over the model's cell x cell encoded cells (partial cells at the edges)."""
    h, w = field.shape
    ph, pw = (-h) % cell, (-w) % cell
    padded = np.pad(np.asarray(field, dtype=np.float64), ((0, ph), (0, pw)), constant_values=np.nan)
    blocks = padded.reshape((h + ph) // cell, cell, (w + pw) // cell, cell)
    with np.errstate(invalid="ignore"):
        return np.nanmean(blocks, axis=(1, 3))


def _grid_coords(inputs, H: int, W: int):
    coords = getattr(inputs, "coords", None)
    out = []
    for name, n in (("x", W), ("y", H)):
        c = coords[name] if coords is not None and name in coords and coords[name].ndim == 1 else None
        if c is not None and c.size == n:
            out.append((np.asarray(c.values, dtype=np.float64), dict(c.attrs)))
        else:
            label = "column" if name == "x" else "row"
            out.append((np.arange(n, dtype=np.float64), {"long_name": f"{label} index of the input grid"}))
    (xs, xa), (ys, ya) = out
    return xs, ys, xa, ya


# ---------------------------------------------------------------------------------------------------------
# output


def _is_metric(coord_attrs: dict) -> bool:
    return str(coord_attrs.get("units", "")).strip().lower() in _METRIC_UNITS


def plot_trend_vectors(vectors: xr.Dataset, field_dbz, path, every: int | None = None, title: str | None = None,
                       overwrite: bool = True):
    """Draw ``trend_vectors`` output over a dBZ field (the last observed frame) with ``plots.plot_trend``.

    With x/y in metres or km the axes are in km and the arrows and key in km per step; otherwise
    the axes are pixels and the arrows grid cells per step.
    """
    from .plots import plot_trend

    if "dx" not in vectors or "dy" not in vectors:
        raise NowcastError("the vectors need dx and dy variables")
    metric = (
        hasattr(field_dbz, "coords") and all(n in field_dbz.coords for n in ("x", "y"))
        and _is_metric(field_dbz["x"].attrs) and _is_metric(field_dbz["y"].attrs)
    )
    transient = "transient_dx" in vectors
    labels = ("trend", "transient")
    if "flow_dx" in vectors:
        # a Lagrangian model: the optical flow, and the network's correction to it in the second colour
        vectors = vectors.assign(transient_dx=vectors["dx"], transient_dy=vectors["dy"],
                                 dx=vectors["flow_dx"], dy=vectors["flow_dy"])
        transient, labels = True, ("optical flow", f"learned correction ({vectors.attrs.get('field', 'trend')})")
    if metric:
        # plot_trend reads the field's coordinates; dy along +y = up on a north-up picture
        kw = dict(field_dbz=field_dbz, dx=vectors["dx"].values, dy=vectors["dy"].values, dy_along="y")
        if transient:
            kw.update(transient_dx=vectors["transient_dx"].values, transient_dy=vectors["transient_dy"].values)
    else:
        # pixel axes: back to (column, row) components
        sx, sy = _axis_sign(vectors["x"].values), _axis_sign(vectors["y"].values)
        kw = dict(field_dbz=np.asarray(getattr(field_dbz, "values", field_dbz)), dx=sx * vectors["dx"].values,
                  dy=sy * vectors["dy"].values, dy_along="row")
        if transient:
            kw.update(transient_dx=sx * vectors["transient_dx"].values,
                      transient_dy=sy * vectors["transient_dy"].values)
    if title is None:
        title = _trend_title(vectors, field_dbz)
    return plot_trend(path=path, every=every, units_label="pixels per step", title=title, overwrite=overwrite,
                      labels=labels, **kw)


def _trend_title(vectors: xr.Dataset, field_dbz) -> str:
    """A plain title: what the arrows are, the model, and the valid time of the radar image under them."""
    a = vectors.attrs
    model = a.get("model", "the model")
    when = ""
    t = getattr(field_dbz, "coords", {}).get("time") if hasattr(field_dbz, "coords") else None
    if t is not None and t.ndim == 0 and np.issubdtype(t.dtype, np.datetime64):
        when = " at " + np.datetime_as_string(t.values, unit="m").replace("T", " ") + " UTC"
    if "flow_dx" in vectors:
        what = f"How {model} moves the echoes{when}"
    else:
        what = f"The motion {model} has learned{when}"
    reads = str(a.get("step_reads", ""))
    source = "the last observed frame" if reads == f"input frame {a.get('input_frames')}" else reads
    return f"{what}\n(motion read from {source}, drawn over the last observed frame)"


def write_vectors(vectors: xr.Dataset, path, overwrite: bool = True):
    """Write the vectors as CF netCDF, atomically (the encoding policy of `nowcast.netcdf`)."""
    ds = vectors.copy()
    for name in ds.data_vars:
        ds[name].encoding = float_field()
    write_dataset(ds, path, overwrite=overwrite)
    return path


def summarise(vectors: xr.Dataset, prefix: str | None = None) -> dict:
    """Mean displacement (grid cells per step) and its direction in degrees clockwise from +y (north).

    prefix: which vectors ("" the MotionGRU's, "flow_", "total_"); default: the total motion of a Lagrangian
    model, else the MotionGRU's.
    """
    if prefix is None:
        prefix = "total_" if "total_dx" in vectors else ""
    ux, uy = vectors[prefix + "dx"].values, vectors[prefix + "dy"].values
    dx = float(np.nanmean(ux)) if np.isfinite(ux).any() else float("nan")
    dy = float(np.nanmean(uy)) if np.isfinite(uy).any() else float("nan")
    speed = float(np.hypot(dx, dy))
    heading = float(np.degrees(np.arctan2(dx, dy)) % 360.0) if speed > 0 else float("nan")
    return {"mean_dx": dx, "mean_dy": dy, "mean_speed": speed, "heading_deg": heading}
