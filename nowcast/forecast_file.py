"""Forecasts as CF-1.8 netCDF: `reflectivity` in dBZ on (time, y, x) with real future timestamps."""

from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from . import __version__
from .atomic import atomic_output
from .radar import time_step


def forecast_dataarray(values, inputs: xr.DataArray, method: str) -> xr.DataArray:
    """Wrap forecast frames (n, H, W) in dBZ with the input's grid and future times.

    Lead k (1-based) is valid at last observed time + k x step.
    """
    values = np.asarray(values, dtype=np.float32)
    step = time_step(inputs)
    reference = inputs["time"].values[-1]
    times = reference + step * np.arange(1, values.shape[0] + 1)
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


def to_cf_dataset(forecast: xr.DataArray, method: str, inputs: xr.DataArray | None = None) -> xr.Dataset:
    """A CF-1.8 Dataset ready for netCDF, with packing and compression encodings set."""
    da = forecast.copy()
    grid_mapping = da.attrs.get("grid_mapping")
    ds = da.to_dataset(name="reflectivity")
    if "crs" in ds.coords:
        ds = ds.reset_coords("crs")
        ds["crs"] = ds["crs"].astype(np.int32)
    ref = np.datetime64(da["forecast_reference_time"].values, "s")
    ref_text = str(ref).replace("T", " ")
    ds["time"].attrs = {"standard_name": "time", "long_name": "valid time", "axis": "T"}
    ds["forecast_reference_time"].attrs = {
        "standard_name": "forecast_reference_time", "long_name": "time of the last observed frame"}
    ds["forecast_period"].attrs = {"standard_name": "forecast_period", "long_name": "lead time"}
    for axis in ("x", "y"):
        if axis in ds.coords and "axis" not in ds[axis].attrs:
            ds[axis].attrs.setdefault("standard_name", f"projection_{axis}_coordinate")
            ds[axis].attrs["axis"] = axis.upper()
    if grid_mapping:
        ds["reflectivity"].attrs["grid_mapping"] = grid_mapping
    ds["reflectivity"].attrs.pop("method", None)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"Radar reflectivity nowcast ({method})",
        "institution": "made with nowcast (open-source precipitation nowcasting)",
        "source": f"nowcast {__version__}; method: {method}",
        "history": f"{now}: nowcast {__version__} forecast from {ref_text} UTC",
        "references": "Wu et al. 2021, MotionRNN (CVPR); pysteps for the extrapolation baseline",
        "nowcast_method": method,
        "nowcast_version": __version__,
    }
    if inputs is not None and "source_files" in inputs.attrs:
        ds.attrs["input_files"] = inputs.attrs["source_files"]
        ds.attrs["input_conversion"] = inputs.attrs.get("conversion", "")
    ds["reflectivity"].encoding = {
        "dtype": "int16", "scale_factor": np.float32(0.01), "add_offset": np.float32(0.0), "_FillValue": np.int16(-32768),
        "zlib": True, "complevel": 4, "chunksizes": (1,) + tuple(da.shape[1:]),
    }
    ds["time"].encoding = {"units": f"minutes since {ref_text}", "calendar": "standard", "dtype": "float64"}
    ds["forecast_reference_time"].encoding = {"units": f"minutes since {ref_text}", "calendar": "standard"}
    ds["forecast_period"].encoding = {"units": "minutes", "dtype": "float64"}
    return ds


def write_forecast(forecast: xr.DataArray, path, method: str | None = None, inputs=None,
                   overwrite: bool = False) -> None:
    """Write a forecast DataArray (from `forecast_dataarray`) atomically as CF netCDF."""
    method = method or forecast.attrs.get("method", "unknown")
    ds = to_cf_dataset(forecast, method, inputs)
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4")
