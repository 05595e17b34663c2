"""Forecasts (and motion fields) as CF-1.8 netCDF with real future timestamps and the input's grid.

A forecast file holds one data variable on (time, y, x): ``reflectivity`` in dBZ, or ``rain_rate`` in
mm h-1 (Marshall-Palmer back-conversion, no echo = 0 mm/h). Beside it: the input's x/y coordinates
and grid mapping, 2-D ``lat``/``lon`` when the grid mapping is understood, ``forecast_reference_time``
and ``forecast_period``. Coordinates carry no _FillValue (they never have missing values).
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from .version import __version__
from . import units as U
from .errors import NowcastError
from .geo import latlon
from .netcdf import NO_FILL, float_field, minutes_since, origin_text, packed_dbz, write_dataset
from .radar import time_step
from .timeaxis import valid_times

DBZ = "dBZ"
RAIN_RATE = "mm/h"
OUTPUT_UNITS = (DBZ, RAIN_RATE)
_RAIN_RATE_SPELLINGS = {"mm/h", "mmh-1", "mm/hr", "mmhr-1", "mmh^-1"}


def output_units(text: str | None, inputs: xr.DataArray | None = None) -> str:
    """'dBZ' or 'mm/h' from the user's spelling; None means the input's kind (rain in, rain out)."""
    if text is None:
        kind = inputs.attrs.get("input_kind") if inputs is not None else None
        return RAIN_RATE if kind in ("rate", "accumulation") else DBZ
    spelled = "".join(str(text).lower().split())
    if spelled == "dbz":
        return DBZ
    if spelled in _RAIN_RATE_SPELLINGS:
        return RAIN_RATE
    raise NowcastError(f"output units {text!r} are not understood; choose dBZ or mm/h")


def forecast_times(inputs: xr.DataArray, leads: int) -> np.ndarray:
    """The valid times of leads 1..leads after a sequence: lead k at its last time + k x its regular step."""
    return valid_times(inputs["time"].values[-1], time_step(inputs), leads)


def forecast_dataarray(values, inputs: xr.DataArray, method: str) -> xr.DataArray:
    """Wrap forecast frames (n, H, W) in dBZ with the input's grid and future times (``forecast_times``)."""
    values = np.asarray(values, dtype=np.float32)
    reference = inputs["time"].values[-1]
    times = forecast_times(inputs, values.shape[0])
    out = xr.DataArray(values, dims=("time", "y", "x"), name="reflectivity")
    out = out.assign_coords(time=("time", times))
    for c in ("y", "x", "crs"):
        if c in inputs.coords:
            out = out.assign_coords({c: inputs[c]})
    out = out.assign_coords(
        forecast_reference_time=((), reference),
        forecast_period=("time", (times - reference).astype("timedelta64[ns]")),
    )
    out.attrs = {
        "units": "dBZ",
        "standard_name": "equivalent_reflectivity_factor",
        "long_name": f"forecast equivalent reflectivity factor ({method})",
        "method": method,
    }
    if "crs" in inputs.coords:
        out.attrs["grid_mapping"] = "crs"
    return out


def dbz_to_rain_rate(dbz: np.ndarray) -> np.ndarray:
    """Forecast dBZ -> mm/h with Marshall-Palmer; no echo (the floor) is 0 mm/h, no data stays NaN."""
    dbz = np.asarray(dbz, dtype=np.float32)
    rate = U.dbz_to_rainrate(dbz).astype(np.float32)
    rate[dbz <= U.DBZ_FLOOR] = 0.0
    return rate


def _data_variable(forecast: xr.DataArray, method: str, units: str) -> tuple[str, xr.DataArray]:
    """The forecast's data variable in the requested units, with its CF attributes and encoding."""
    if units == DBZ:
        da = packed_dbz(forecast)
        da.attrs.pop("method", None)
        return "reflectivity", da
    da = forecast.copy(data=dbz_to_rain_rate(forecast.values))
    da.attrs = {
        "units": "mm h-1",
        "standard_name": "lwe_precipitation_rate",
        "long_name": f"forecast rain rate ({method}), from reflectivity by Marshall-Palmer Z = 200 R^1.6",
    }
    if "grid_mapping" in forecast.attrs:
        da.attrs["grid_mapping"] = forecast.attrs["grid_mapping"]
    # float32 (compressed), not packed like dBZ: int16 in 0.01 mm/h steps ends at 327 mm/h (63 dBZ), and steps
    # coarse enough for 865 mm/h (70 dBZ) would blur light rain near 0.1 mm/h (docs/conventions.md)
    da.encoding = float_field(da, dtype="float32")
    return "rain_rate", da


def _cell_bounds(centres: np.ndarray) -> np.ndarray:
    """(n, 2) cell edges halfway between centres; the outer edges mirror the nearest half-step."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size < 2:
        return np.stack([c, c], axis=1)
    mid = (c[1:] + c[:-1]) / 2
    edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _add_axis_bounds(ds: xr.Dataset) -> xr.Dataset:
    """x_bounds/y_bounds (cell edges) for the x and y axes, referenced by the axes' ``bounds`` attribute (an
    input's own bounds name is kept)."""
    for axis in ("x", "y"):
        if axis not in ds.coords or ds[axis].ndim != 1:
            continue
        name = ds[axis].attrs.get("bounds") or f"{axis}_bounds"
        ds[axis].attrs["bounds"] = name
        ds[name] = xr.DataArray(_cell_bounds(ds[axis].values), dims=(axis, "nv"))
        ds[name].encoding = {**NO_FILL, "coordinates": None}  # CF: bounds carry no attributes of their own
    return ds


def _add_latlon(ds: xr.Dataset, forecast: xr.DataArray, data_name: str) -> xr.Dataset:
    """2-D latitude/longitude from the grid mapping (pyproj), when nowcast.geo understands it."""
    found = latlon(forecast)
    if found is None:
        return ds
    lat, lon = found
    ds = ds.assign_coords(
        lat=(("y", "x"), np.asarray(lat, dtype=np.float64),
             {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}),
        lon=(("y", "x"), np.asarray(lon, dtype=np.float64),
             {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}),
    )
    for name in ("lat", "lon"):
        ds[name].encoding = dict(NO_FILL)
    return ds


def _grid_mapping_variable(ds: xr.Dataset) -> xr.Dataset:
    """The grid mapping as a plain int32 variable that lists no coordinates of its own."""
    if "crs" not in ds.coords:
        return ds
    ds = ds.reset_coords("crs")
    ds["crs"] = ds["crs"].astype(np.int32)
    ds["crs"].attrs.pop("coordinates", None)
    # Stop xarray from writing `coordinates = "forecast_reference_time"` onto the grid mapping.
    ds["crs"].encoding["coordinates"] = None
    return ds


def to_cf_dataset(forecast: xr.DataArray, method: str, inputs: xr.DataArray | None = None,
                  units: str = DBZ, postprocessing: str | None = None) -> xr.Dataset:
    """A CF-1.8 Dataset ready for netCDF, with packing, compression and fill values set.

    postprocessing: what was done to the method's forecast (``ForecastMethod.postprocessing``), recorded as the
    global attribute ``nowcast_postprocessing``."""
    units = output_units(units)
    name, da = _data_variable(forecast, method, units)
    ds = da.to_dataset(name=name)
    ds = _grid_mapping_variable(ds)
    ds = _add_latlon(ds, forecast, name)
    ds = _add_axis_bounds(ds)
    ref = np.datetime64(forecast["forecast_reference_time"].values, "s")
    ref_text = origin_text(ref)
    ds["time"].attrs = {"standard_name": "time", "long_name": "valid time", "axis": "T"}
    ds["forecast_reference_time"].attrs = {
        "standard_name": "forecast_reference_time", "long_name": "time of the last observed frame"}
    # lead time as plain minutes: xarray would store a timedelta with a non-CF 'dtype' attribute
    period = ds["forecast_period"].values / np.timedelta64(1, "m")
    ds = ds.assign_coords(forecast_period=("time", period.astype(np.float64)))
    ds["forecast_period"].attrs = {"standard_name": "forecast_period", "long_name": "lead time", "units": "minutes"}
    for axis in ("x", "y"):
        if axis in ds.coords and "axis" not in ds[axis].attrs:
            ds[axis].attrs.setdefault("standard_name", f"projection_{axis}_coordinate")
            ds[axis].attrs["axis"] = axis.upper()
        if axis in ds.coords:  # drop the encoding the input file gave its axes
            ds[axis].encoding = dict(NO_FILL)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"Radar {'reflectivity' if units == DBZ else 'rain-rate'} nowcast ({method})",
        "institution": "made with nowcast (open-source precipitation nowcasting)",
        "source": f"nowcast {__version__}; method: {method}",
        "history": f"{now}: nowcast {__version__} forecast from {ref_text} UTC",
        "references": "Wu et al. 2021, MotionRNN (CVPR); pysteps for the extrapolation baseline",
        "nowcast_method": method,
        "nowcast_version": __version__,
    }
    if postprocessing is not None:
        ds.attrs["nowcast_postprocessing"] = postprocessing
    if inputs is not None and "source_files" in inputs.attrs:
        ds.attrs["input_files"] = inputs.attrs["source_files"]
        ds.attrs["input_conversion"] = inputs.attrs.get("conversion", "")
    ds["time"].encoding = minutes_since(ref, dtype="float64")
    ds["forecast_reference_time"].encoding = minutes_since(ref)
    ds["forecast_period"].encoding = {"dtype": "float64", **NO_FILL}
    return ds


def write_forecast(forecast: xr.DataArray, path, method: str | None = None, inputs=None,
                   overwrite: bool = False, units: str = DBZ, postprocessing: str | None = None) -> None:
    """Write a forecast DataArray (from `forecast_dataarray`, in dBZ) atomically as CF netCDF.

    units: 'dBZ' (variable ``reflectivity``) or 'mm/h' (variable ``rain_rate``).
    """
    method = method or forecast.attrs.get("method", "unknown")
    write_dataset(to_cf_dataset(forecast, method, inputs, units=units, postprocessing=postprocessing), path,
                  overwrite=overwrite)


def motion_dataset(velocity, frame: xr.DataArray, step_minutes: float | None = None) -> xr.Dataset:
    """An optical-flow motion field (2, H, W) as CF variables on the frame's grid.

    velocity[0] is the motion along x (columns, to the right), velocity[1] along y (rows, downwards),
    both in grid cells per time step (the pysteps convention).
    """
    velocity = np.asarray(velocity, dtype=np.float32)
    if velocity.ndim != 3 or velocity.shape[0] != 2 or velocity.shape[1:] != frame.shape[-2:]:
        raise NowcastError(f"a motion field must be (2, {frame.shape[-2]}, {frame.shape[-1]}), "
                           f"got {velocity.shape}")
    per_step = f"grid cells per {step_minutes:g}-minute step" if step_minutes else "grid cells per time step"
    coords = {c: frame[c] for c in ("y", "x") if c in frame.coords}
    ds = xr.Dataset(
        {
            "motion_x": (("y", "x"), velocity[0], {
                "long_name": f"motion along the x axis (columns, to the right) in {per_step}", "units": "1"}),
            "motion_y": (("y", "x"), velocity[1], {
                "long_name": f"motion along the y axis (rows, downwards in the image) in {per_step}",
                "units": "1"}),
        },
        coords=coords,
    )
    if "crs" in frame.coords:
        ds["crs"] = xr.DataArray(np.int32(0), attrs={k: v for k, v in frame["crs"].attrs.items()
                                                     if k != "coordinates"})
        for name in ("motion_x", "motion_y"):
            ds[name].attrs["grid_mapping"] = "crs"
    for name in ("motion_x", "motion_y"):
        ds[name].encoding = float_field()
    for axis in ("x", "y"):
        if axis in ds.coords:  # drop the encoding the input file gave its axes
            ds[axis].encoding = dict(NO_FILL)
    if "time" in frame.coords and frame["time"].ndim == 0:
        ds.attrs["valid_time"] = str(np.datetime64(frame["time"].values, "s")) + "Z"
    ds.attrs.update({"Conventions": "CF-1.8",
                     "title": "Optical-flow motion field of the last observed radar frames",
                     "source": f"nowcast {__version__}; Lucas-Kanade optical flow (pysteps)"})
    if step_minutes:
        ds.attrs["time_step_minutes"] = float(step_minutes)
    return ds


def write_motion(velocity, frame: xr.DataArray, path, step_minutes: float | None = None,
                 overwrite: bool = False) -> None:
    """Write a motion field (see `motion_dataset`) atomically as CF netCDF."""
    write_dataset(motion_dataset(velocity, frame, step_minutes), path, overwrite=overwrite)
