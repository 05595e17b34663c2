"""Open radar files as one reflectivity sequence in dBZ.

`open_radar` takes one file, several files or a glob of per-frame files and returns an
`xarray.DataArray` named ``reflectivity`` (float32 dBZ, dims (time, y, x)) that keeps the input's x/y
coordinates and grid mapping. Conventions (docs/conventions.md): no echo is -10 dBZ, no data is NaN.
Everything done to the data that the user should know (unit rule, dropped duplicates, gaps) is
reported with a `NowcastWarning` and recorded in ``attrs["nowcast_notes"]``.

An archive too large for memory (over `LAZY_THRESHOLD_BYTES` as float32, or ``lazy=True``) is read lazily
(`nowcast.archive`): the same DataArray, whose frames are read, converted and checked when indexed.
"""

from __future__ import annotations

import glob as globmod
import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr

from . import archive, formats, timeaxis
from . import units as U
from .errors import NowcastError, NowcastNote, NowcastWarning
from .options import OptionError
from .timeaxis import regular_step

# Hard limits beyond which values cannot be weather: refuse rather than forecast garbage.
MAX_PHYSICAL_DBZ = 100.0
MIN_PHYSICAL_DBZ = -60.0
NEGATIVE_RATE_TOLERANCE = -1.0  # mm/h; small negatives are processing noise (BoM has -0.1 mm)
UNIT_CHOICES = ("dBZ", "mm/h", "mm", "pixels")


# ----------------------------------------------------------------------------------- units


@dataclass(frozen=True)
class UnitRule:
    """How the stored values become dBZ."""

    kind: str  # "dbz" | "rate" | "accumulation" | "pixels"
    factor: float = 1.0  # rate: multiply to get mm/h
    label: str = ""


_RATE_HOURLY = {
    "mm/h", "mmh-1", "mmhr-1", "mm/hr", "mm/hour", "mmhour-1", "mmperhour", "kgm-2h-1",
    "kg/m2/h", "kg/m^2/h", "kgm-2hr-1", "kg/m2/hr", "l/m2/h", "mmh^-1", "kgm^-2h^-1",
}
_RATE_SECONDLY = {"mms-1", "mm/s", "kgm-2s-1", "kg/m2/s", "kgm^-2s^-1"}
_ACCUMULATION = {"mm", "kgm-2", "kg/m2", "kg/m^2", "kgm^-2", "l/m2", "millimeters", "millimetres"}
_DBZ = {"dbz", "dbz(reflectivity)", "dbze"}


def _normalise_units(text: str) -> str:
    return re.sub(r"\s+", "", str(text).strip().lower()).replace("**", "^")


def parse_units(text: str) -> UnitRule | None:
    """Recognise a units string; None when it is not one we know."""
    u = _normalise_units(text)
    if u in _DBZ:
        return UnitRule("dbz", label="dBZ")
    if u in _RATE_HOURLY:
        return UnitRule("rate", 1.0, label=f"rain rate in {text}")
    if u in _RATE_SECONDLY:
        return UnitRule("rate", 3600.0, label=f"rain rate in {text}")
    if u in _ACCUMULATION:
        return UnitRule("accumulation", label=f"accumulation in {text} over the time step")
    if u in ("pixels", "pixel", "counts", "1", "8bit", "8-bit"):
        return UnitRule("pixels", label="8-bit pixels")
    return None


def _user_unit_rule(units: str) -> UnitRule:
    rule = parse_units(units)
    if rule is None:
        raise OptionError(f"{{units}} {units!r} is not understood; use one of {', '.join(UNIT_CHOICES)}", "units")
    return rule


# -------------------------------------------------------------------------------- files


def expand_paths(paths) -> list[Path]:
    """Files from paths and glob patterns, sorted by name, duplicates dropped."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            matches = sorted(globmod.glob(s))
            if not matches:
                # A name with brackets only (radar[test].nc) is more likely a file name than a pattern.
                looks_like_pattern = any(ch in s for ch in "*?")
                raise NowcastError("no file matches this pattern" if looks_like_pattern
                                   else "file not found (nor any file matching it as a pattern)", s)
            found.extend(Path(m) for m in matches)
        else:
            found.append(Path(s))
    unique = list(dict.fromkeys(found))
    if not unique:
        raise NowcastError("no input file given")
    for f in unique:
        if f.is_dir():
            raise NowcastError("is a folder; give the files in it (a glob such as 'folder/*.nc' works)", f)
        if not f.exists():
            raise NowcastError("file not found", f)
        if f.stat().st_size == 0:
            raise NowcastError("file is empty", f)
    return unique


def _open_dataset(path: Path, fmt: str | None = None) -> tuple[xr.Dataset, str]:
    """The file as a Dataset, and its format: `fmt` if given, else what its content shows (nowcast.formats)."""
    fmt = fmt or formats.detect_format(path)
    if fmt != "netcdf":
        return formats.read_dataset(path, fmt), fmt
    try:
        return xr.open_dataset(path, mask_and_scale=True, decode_times=True, cache=False), fmt
    except Exception as exc:  # netCDF4/h5 raise many types for unreadable files
        raise archive.unreadable(path, exc) from None


def _is_bounds_or_grid(ds: xr.Dataset, name: str) -> bool:
    var = ds[name]
    if "grid_mapping_name" in var.attrs:
        return True
    referenced = {v.attrs.get("bounds") for v in ds.variables.values()}
    return name in referenced or name.endswith(("_bounds", "_bnds"))


def data_candidates(ds: xr.Dataset) -> list[str]:
    """Variables that look like gridded radar fields: numeric, at least 2-D, not bounds/CRS."""
    out = []
    for name, var in ds.data_vars.items():
        if var.ndim < 2 or not np.issubdtype(var.dtype, np.number):
            continue
        if _is_bounds_or_grid(ds, name):
            continue
        out.append(name)
    return out


def _has_time_axis(var: xr.DataArray) -> bool:
    """Whether a variable runs along time: a dimension with dates, or one named time."""
    for dim in var.dims:
        if dim == "time" or (dim in var.coords and np.issubdtype(var[dim].dtype, np.datetime64)):
            return True
    return False


def _choose_variable(ds: xr.Dataset, path: Path, variable: str | None) -> tuple[str, str | None]:
    """The data variable to read, and a note when nowcast chose it among several."""
    candidates = data_candidates(ds)
    if variable is not None:
        if variable not in ds.data_vars:
            raise NowcastError(
                f"has no variable {variable!r}; candidates: {', '.join(candidates) or 'none'}", path
            )
        return variable, None
    if not candidates:
        raise NowcastError("has no gridded data variable (need at least 2 dimensions)", path)
    if len(candidates) == 1:
        return candidates[0], None
    # Quality layers and masks beside the data are usually static: the one field that runs in time is the data.
    in_time = [name for name in candidates if _has_time_axis(ds[name])]
    if len(in_time) == 1:
        others = ", ".join(name for name in candidates if name != in_time[0])
        return in_time[0], (f"read {in_time[0]!r}, the only data variable with a time axis "
                            f"(also in the file: {others}; choose another with --variable)")
    raise NowcastError(
        f"has several data variables ({', '.join(candidates)}); choose one with --variable", path
    )


def _time_of_frame(ds: xr.Dataset) -> tuple[str, np.ndarray] | None:
    """For per-frame files without a time dimension: the variable holding the frame's valid time, and the time."""
    for name in ("valid_time", "time", "t"):
        if name in ds.variables and ds[name].ndim == 0 and np.issubdtype(ds[name].dtype, np.datetime64):
            return name, np.array([ds[name].values], dtype="datetime64[ns]")
    for name, var in ds.variables.items():
        if var.ndim == 0 and var.attrs.get("standard_name") == "time" and np.issubdtype(var.dtype, np.datetime64):
            return str(name), np.array([var.values], dtype="datetime64[ns]")
    return None


def _accumulation_seconds(ds: xr.Dataset) -> float | None:
    """Length of the accumulation period when the file states it (start and end times)."""
    if "start_time" in ds.variables and "valid_time" in ds.variables:
        try:
            dt = (ds["valid_time"].values - ds["start_time"].values) / np.timedelta64(1, "s")
            return float(dt) if float(dt) > 0 else None
        except TypeError:
            return None
    return None


@dataclass
class _Frames:
    path: Path
    data: xr.DataArray  # (time, y, x) as stored (after CF scaling), float; the first frame only for a lazy read
    raw_integer: bool
    grid_mapping: xr.DataArray | None
    accumulation_seconds: float | None
    choice_note: str | None = None  # how the variable was chosen, when nowcast chose among several
    layout: archive.Layout | None = None  # where the data and time live: how the rest of a lazy archive is read
    n_frames: int = 0  # frames in the file


def _picks(da: xr.DataArray, name: str, path: Path, skip: tuple, select: dict | None, reduce: str | None) -> tuple:
    """How each extra dimension is dropped: a --select index, the only index, or a --reduce."""
    picks = []
    for d in da.dims:
        if d in skip:
            continue
        if select and d in select:
            idx = select[d]
            if not 0 <= idx < da.sizes[d]:
                raise OptionError(f"{{select}} {d}={idx} is outside 0..{da.sizes[d] - 1}", "select", path=path)
            picks.append((d, int(idx), None))
        elif da.sizes[d] == 1:
            picks.append((d, 0, None))
        elif reduce in ("max", "mean"):
            picks.append((d, None, reduce))
        else:
            raise OptionError(
                f"variable {name!r} has an extra dimension {d!r} of size {da.sizes[d]}; "
                f"pick a level with {{select}} {d}=INDEX or combine with {{reduce}} max|mean", "select", "reduce",
                path=path)
    return tuple(picks)


def _layout(ds: xr.Dataset, name: str, path: Path, select: dict | None, reduce: str | None):
    """The file's Layout, and the frame time of a per-frame file (None when the data have a time dimension)."""
    da = ds[name]
    time_dim = next((d for d in da.dims if np.issubdtype(da[d].dtype, np.datetime64)), None) if da.ndim else None
    if time_dim is None and "time" in da.dims:
        raise NowcastError(f"variable {name!r} has a 'time' dimension whose values are not dates", path)
    if da.ndim < 2:
        raise NowcastError(f"variable {name!r} is not a 2-D field", path)
    y_dim, x_dim = da.dims[-2], da.dims[-1]
    frame_time, time_var = None, time_dim
    if time_dim is None:
        found = _time_of_frame(ds)
        if found is None:
            raise NowcastError(
                f"variable {name!r} has no time dimension and the file records no valid time", path
            )
        time_var, frame_time = found
    if time_dim in (y_dim, x_dim):
        raise NowcastError(f"variable {name!r} must have y and x as its last two dimensions", path)
    layout = archive.Layout(
        variable=name, dims=tuple(da.dims), sizes=tuple(int(da.sizes[d]) for d in da.dims if d != time_dim),
        time_dim=time_dim, time_var=time_var, y_dim=y_dim, x_dim=x_dim,
        picks=_picks(da, name, path, (time_dim, y_dim, x_dim), select, reduce))
    return layout, frame_time


def _read_frames(path: Path, variable: str | None, select: dict | None, reduce: str | None,
                 head: int | None = None, fmt: str | None = None) -> _Frames:
    """One file's frames as stored (all of them, or the first `head`), with what the reader learnt about it."""
    ds, fmt = _open_dataset(path, fmt)
    name, choice_note = _choose_variable(ds, path, variable)
    da = ds[name]
    raw_dtype = da.encoding.get("dtype", da.dtype)
    raw_integer = np.issubdtype(np.dtype(raw_dtype), np.integer) and "scale_factor" not in da.encoding
    layout, frame_time = _layout(ds, name, path, select, reduce)
    layout = replace(layout, format=fmt)
    da = archive.shape_frames(da, layout, frame_time)
    y_dim, x_dim = layout.y_dim, layout.x_dim
    gm_name = da.attrs.get("grid_mapping")
    grid_mapping = ds[gm_name] if gm_name and gm_name in ds.variables else None
    # Keep only the coordinates on our three dims; scalar leftovers confuse concatenation.
    keep = {c for c in da.coords if set(da[c].dims) <= {"time", y_dim, x_dim} and da[c].ndim > 0}
    da = da.reset_coords([c for c in da.coords if c not in keep], drop=True)
    n_frames = int(da.sizes["time"])
    if head is not None:
        da = da.isel(time=slice(0, head))
    da = da.load().astype(np.float32)
    frames = _Frames(path, da, raw_integer, grid_mapping.load() if grid_mapping is not None else None,
                     _accumulation_seconds(ds), choice_note, layout, n_frames)
    ds.close()
    return frames


# --------------------------------------------------------------------------------- time


def _check_times(times: np.ndarray, label) -> tuple[np.timedelta64 | None, list[str]]:
    """The regular step, and one note per gap; an error for times off the step's grid."""
    step = regular_step(times)
    if step is None:
        return None, []
    s = int(step.astype(np.int64))
    if s <= 0:
        raise NowcastError("times are not increasing", label)
    i = timeaxis.first_off_grid(times, step)
    if i is not None:
        raise NowcastError(
            f"irregular time steps: {_fmt_td((times[i + 1] - times[i]).astype(np.int64))} between "
            f"{_fmt_t(times[i])} and {_fmt_t(times[i + 1])}, but the regular step is {_fmt_td(s)}",
            label,
        )
    return step, [f"gap of {missing} missing frame(s) between {_fmt_t(times[i])} and {_fmt_t(times[i + 1])}: "
                  "kept as a gap; windows spanning it are skipped" for i, missing in timeaxis.gaps(times, step)]


def _fmt_t(t) -> str:
    return str(np.datetime64(t, "s")).replace("T", " ")


def _fmt_td(ns) -> str:
    sec = int(ns) / 1e9
    return f"{sec / 60:g} min" if sec >= 60 else f"{sec:g} s"


# --------------------------------------------------------------------------------- main

# An archive whose frames would take more than this as float32 (estimated from its first file) is read
# lazily, a window at a time; a smaller one is read at once, which keeps training samples cheap to cut.
LAZY_THRESHOLD_BYTES = 2**30


def open_radar(
    paths,
    variable: str | None = None,
    units: str | None = None,
    scale: float | None = None,
    offset: float | None = None,
    zr_a: float = U.MP_A,
    zr_b: float = U.MP_B,
    select: dict | None = None,
    reduce: str | None = None,
    lazy: bool | None = None,
    index_cache=None,
    format: str | None = None,
) -> xr.DataArray:
    """Read radar files into one (time, y, x) reflectivity sequence in dBZ.

    paths: a file, a glob pattern, or a list of either. Several files are concatenated along time,
    sorted, and frames with a duplicate time are dropped (first file wins).
    variable: the data variable; found automatically when there is one candidate.
    units: override the file's units attribute ('dBZ', 'mm/h', 'mm' accumulation, 'pixels').
    scale/offset: 8-bit pixel rule, dBZ = pixel * scale + offset (default 95/255 and -10).
    zr_a/zr_b: the Z-R relation for rain rates (Marshall-Palmer 200, 1.6).
    select/reduce: how to drop an extra dimension, e.g. select={'elevation': 0} or reduce='max'.
    lazy: None reads lazily when the frames would take more than LAZY_THRESHOLD_BYTES (1 GiB) as float32;
    True or False force either way. A lazy sequence reads its frames from the files only when indexed
    (``nowcast.archive``), with the same values; every file's times are read at once, its values are
    checked when read (an unphysical file is named then).
    index_cache: folder for a lazy archive's index of file times (None: ``archive.default_cache_dir()``;
    False: no index kept).
    format: the files' format (``nowcast.formats.FORMAT_NAMES``: netcdf, odim, knmi, pgm, geotiff, mch-gif);
    None finds each file's format from its content.
    """
    fmt = formats.check_format_name(format)
    files = expand_paths(paths)
    label = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
    first = _read_frames(files[0], variable, select, reduce, head=1, fmt=fmt)
    conversion = dict(units=units, scale=scale, offset=offset, zr_a=zr_a, zr_b=zr_b)
    if lazy is None:
        lazy = len(files) * first.n_frames * first.data[0].size * 4 > LAZY_THRESHOLD_BYTES
    if lazy:
        return _open_lazy(files, first, label, conversion, index_cache)
    notes: list[str] = []
    frames = [_read_frames(f, variable, select, reduce, fmt=fmt) for f in files]
    # One note for the whole sequence, however many per-frame files made the same choice.
    choices = list(dict.fromkeys(fr.choice_note for fr in frames if fr.choice_note))

    da = _join_frames(frames, label, notes)
    times = da["time"].values.astype("datetime64[ns]")
    step, time_notes = _check_times(times, label)
    notes.extend(time_notes)

    values = da.values
    rule = _unit_rule(units, frames[0], values)
    if not np.isfinite(values).any():
        raise NowcastError("all values are no-data (NaN or _FillValue)", label)
    convert = _converter(rule, frames[0], step, conversion, label, notes)
    dbz = convert(values, label, notes)
    return _assemble(dbz, times, frames[0], _Reading(files, label, step, convert, notes, choices))


def _open_lazy(files: list[Path], first: _Frames, label, conversion: dict, index_cache) -> xr.DataArray:
    """The sequence as a lazily indexed array: every file's times now, its values when a window needs them."""
    notes: list[str] = []
    if index_cache is None:
        index_cache = archive.default_cache_dir()
    cache_dir = None if index_cache is False or len(files) == 1 else Path(index_cache)
    index = archive.order_frames(archive.scan_times(files, first.layout, cache_dir))
    if index.duplicates:
        notes.append(f"dropped {index.duplicates} frame(s) with a duplicate time")
    step, time_notes = _check_times(index.times, label)
    notes.extend(time_notes)
    # the rule comes from the first frame; every frame read later is checked on its own
    rule = _unit_rule(conversion["units"], first, first.data.values)
    convert = _converter(rule, first, step, conversion, label, notes)
    array = archive.ArchiveArray(files, index, first.layout, first.data.shape[1:], convert)
    choices = [first.choice_note] if first.choice_note else []
    return _assemble(archive.lazy_variable(array), index.times, first,
                     _Reading(files, label, step, convert, notes, choices))


@dataclass(frozen=True)
class _Reading:
    """How a sequence was read, as its attributes and warnings tell it."""

    files: list
    label: str  # the files, as messages name them
    step: object  # the regular time step (np.timedelta64), or None
    convert: _Converter
    notes: list[str]  # warnings
    choices: list[str]  # choices made for the user (which variable, which level): notes, not warnings


def _assemble(data, times, first: _Frames, reading: _Reading) -> xr.DataArray:
    """The reflectivity DataArray: the dBZ frames (an array, or a lazy variable), the first file's grid, notes."""
    files, step, convert, notes, choices = reading.files, reading.step, reading.convert, reading.notes, reading.choices
    if isinstance(data, xr.Variable):
        out = xr.DataArray(data, name="reflectivity")
    else:
        out = xr.DataArray(data, dims=("time", "y", "x"), name="reflectivity")
    src = first.data
    y_dim, x_dim = src.dims[1], src.dims[2]
    out = out.assign_coords(time=("time", times))
    for new, old in (("y", y_dim), ("x", x_dim)):
        if old in src.coords:
            out = out.assign_coords({new: (new, src[old].values, dict(src[old].attrs))})
    gm = first.grid_mapping
    if gm is not None:
        out = out.assign_coords(crs=xr.DataArray(gm.values, attrs=dict(gm.attrs)))
    out.attrs = {
        "units": "dBZ",
        "long_name": "equivalent reflectivity factor",
        "standard_name": "equivalent_reflectivity_factor",
        "source_files": ", ".join(str(f) for f in files[:5]) + (" ..." if len(files) > 5 else ""),
        "conversion": convert.text,
        "time_step_seconds": float(step / np.timedelta64(1, "s")) if step is not None else float("nan"),
        "input_kind": convert.rule.kind,  # dbz | rate | accumulation | pixels: forecasts default to this kind
    }
    if gm is not None:
        out.attrs["grid_mapping"] = "crs"
    if notes or choices:
        out.attrs["nowcast_notes"] = "; ".join(choices + notes)
    for n in choices:
        warnings.warn(f"{reading.label}: {n}", NowcastNote, stacklevel=3)
    for n in notes:
        warnings.warn(f"{reading.label}: {n}", NowcastWarning, stacklevel=3)
    return out


def _join_frames(frames: list[_Frames], label, notes: list[str]) -> xr.DataArray:
    """One sequence from the files' frames: same grid, sorted by time, duplicate times dropped (first wins)."""
    for fr in frames:
        t = fr.data["time"].values
        if len(t) > 1 and np.any(np.diff(t.astype("datetime64[ns]")).astype(np.int64) <= 0):
            raise NowcastError("times are not increasing within the file", fr.path)
    shapes = {fr.data.shape[1:] for fr in frames}
    if len(shapes) > 1:
        raise NowcastError(f"files have different grids: {sorted(shapes)}", label)
    if len(frames) == 1:
        return frames[0].data
    da = xr.concat([fr.data for fr in frames], dim="time", coords="minimal", compat="override",
                   join="override", combine_attrs="override")
    order = np.argsort(da["time"].values, kind="stable")
    da = da.isel(time=order)
    _, first = np.unique(da["time"].values, return_index=True)
    if len(first) < da.sizes["time"]:
        n = da.sizes["time"] - len(first)
        notes.append(f"dropped {n} frame(s) with a duplicate time")
        da = da.isel(time=np.sort(first))
    return da


def _unit_rule(units: str | None, first: _Frames, values: np.ndarray) -> UnitRule:
    """The user's units, else the file's units attribute, else 8-bit pixels when the values look like them."""
    if units:
        return _user_unit_rule(units)
    raw_units = first.data.attrs.get("units")
    if raw_units is not None:
        rule = parse_units(raw_units)
        if rule is None:
            raise OptionError(
                f"units {raw_units!r} of the data variable are not understood; declare them with "
                f"{{units}} ({' | '.join(UNIT_CHOICES)})", "units", path=first.path)
        return rule
    finite = values[np.isfinite(values)]
    is_pixels = first.raw_integer and finite.size and finite.min() >= 0 and finite.max() <= 255
    if not is_pixels:
        raise OptionError(
            "the data variable has no units attribute; declare them with "
            f"{{units}} ({' | '.join(UNIT_CHOICES)})", "units", path=first.path)
    return UnitRule("pixels", label="8-bit pixels (no units attribute, integers 0-255)")


def _check_physical(dbz: np.ndarray, rule: UnitRule, label) -> None:
    """Refuse values no weather makes: the units are wrong, and a forecast would be garbage."""
    vmax = np.nanmax(dbz)
    if vmax > MAX_PHYSICAL_DBZ or np.nanmin(dbz) < MIN_PHYSICAL_DBZ:
        raise NowcastError(
            f"values far outside any physical range ({np.nanmin(dbz):.4g} to {vmax:.4g} dBZ after "
            f"conversion from {rule.label}); check --units",
            label,
        )


@dataclass(frozen=True)
class _Converter:
    """Stored values -> float32 dBZ with the floor applied; unphysical values refused, naming `label`.

    One object for a whole sequence: the eager path calls it once on every frame, a lazy archive on
    each block of frames it reads (elementwise, so the values are the same).
    """

    rule: UnitRule
    text: str
    factor: float = 1.0  # pixels: the scale; rates and accumulations: to mm/h
    offset: float = 0.0  # pixels
    zr_a: float = U.MP_A
    zr_b: float = U.MP_B

    def __call__(self, values: np.ndarray, label, notes: list[str] | None = None) -> np.ndarray:
        dbz = self._dbz(values, label, notes)
        _check_physical(dbz, self.rule, label)
        return U.apply_floor(dbz).astype(np.float32)

    def _dbz(self, values, label, notes):
        if self.rule.kind == "dbz":
            return values
        if self.rule.kind == "pixels":
            return values * self.factor + self.offset
        rate = values * self.factor
        negative = rate < 0
        if negative.any():
            if np.nanmin(rate) < NEGATIVE_RATE_TOLERANCE:
                raise NowcastError(
                    f"negative rain rates down to {np.nanmin(rate):.4g} mm/h: not physical; check the data",
                    label,
                )
            if notes is not None:  # a lazy archive cannot count them before reading every frame
                notes.append(f"{int(negative.sum())} slightly negative rain value(s) treated as no echo")
            rate = np.where(negative, 0.0, rate)
        return U.rainrate_to_dbz(rate, a=self.zr_a, b=self.zr_b)


def _converter(rule: UnitRule, first: _Frames, step, conversion: dict, label, notes: list[str]) -> _Converter:
    """The sequence's conversion to dBZ (the 8-bit rule is announced in `notes`)."""
    scale, offset, zr_a, zr_b = (conversion[k] for k in ("scale", "offset", "zr_a", "zr_b"))
    if rule.kind == "dbz":
        return _Converter(rule, "stored in dBZ")
    if rule.kind == "pixels":
        s = U.PIXEL_SCALE if scale is None else scale
        o = U.PIXEL_OFFSET if offset is None else offset
        text = f"8-bit pixels: dBZ = pixel * {s:.6g} + {o:g}" + (" (default rule)" if scale is None else "")
        notes.append(f"used {text}")
        return _Converter(rule, text, s, o)
    if rule.kind == "accumulation":
        period = first.accumulation_seconds
        if period is None:
            if step is None:
                raise NowcastError(
                    "accumulations need a time step to become rain rates, and there is one frame only; "
                    "declare --units mm/h if the values are rates",
                    label,
                )
            period = float(step / np.timedelta64(1, "s"))
        factor = 3600.0 / period
        desc = f"accumulation over {period / 60:g} min -> rain rate x{factor:g}"
    else:
        factor, desc = rule.factor, rule.label
    text = f"{desc}; Z = {zr_a:g} R^{zr_b:g} (Marshall-Palmer)" if (zr_a, zr_b) == (U.MP_A, U.MP_B) \
        else f"{desc}; Z = {zr_a:g} R^{zr_b:g}"
    return _Converter(rule, text, factor, 0.0, zr_a, zr_b)


def time_step(seq: xr.DataArray) -> np.timedelta64:
    """The regular time step of a sequence from open_radar (error if it has one frame only)."""
    step = regular_step(seq["time"].values)
    if step is None:
        raise NowcastError("a single frame has no time step")
    return step


def last_regular_frames(seq: xr.DataArray, n: int, label=None) -> xr.DataArray:
    """The last n frames, which must be evenly spaced by the regular step (no gap among them)."""
    if seq.sizes["time"] < n:
        raise NowcastError(f"has {seq.sizes['time']} frame(s); the forecast needs {n} input frames", label)
    tail = seq.isel(time=slice(-n, None))
    if n > 1:
        if not timeaxis.evenly_spaced(tail["time"].values, time_step(seq)):
            raise NowcastError(
                f"the last {n} frames are not evenly spaced (there is a gap among them); "
                "the forecast needs a regular sequence",
                label,
            )
    return tail
