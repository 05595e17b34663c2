"""The one netCDF writer, and the one encoding policy of every file nowcast writes.

Forecasts, motion fields, trend vectors and synthetic radar all go through `write_dataset`. The policy:

* reflectivity is packed as int16 in steps of 0.01 dBZ (float32 scale factor, NaN -> -32768),
  compressed, one frame per chunk (`packed_dbz`); values beyond the int16 range are clipped, not wrapped;
* other fields are float32-compatible with NaN as the fill value, compressed (`float_field`);
* times are "minutes since" a reference time in the standard calendar (`minutes_since`);
* coordinates and grid mappings carry no _FillValue: they never have missing values, and a fill value
  only confuses readers;
* every file is netCDF-4, says ``Conventions = CF-1.8``, and is written atomically (`nowcast.atomic`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .atomic import atomic_output

NO_FILL = {"_FillValue": None}
COMPRESSION = {"zlib": True, "complevel": 4}
DBZ_PACKING_STEP = np.float32(0.01)
_INT16_FILL = np.int16(-32768)
_PACKED_LIMIT = 327.0  # dBZ: 0.01-steps beyond this leave the int16 range


def packed_dbz(da: xr.DataArray) -> xr.DataArray:
    """`da` (time, y, x) in dBZ, clipped to the packed range, with the int16 packing as its encoding."""
    packed = da.clip(-_PACKED_LIMIT, _PACKED_LIMIT)
    packed.attrs = dict(da.attrs)
    packed.encoding = {"dtype": "int16", "scale_factor": DBZ_PACKING_STEP, "add_offset": np.float32(0.0),
                       "_FillValue": _INT16_FILL, **COMPRESSION, "chunksizes": _frame_chunks(da)}
    return packed


def float_field(da: xr.DataArray | None = None, dtype: str | None = None) -> dict:
    """The encoding of a float field: NaN is the fill value, compressed; one frame per chunk for (time, y, x)."""
    encoding = {"_FillValue": np.float32(np.nan), **COMPRESSION}
    if dtype is not None:
        encoding = {"dtype": dtype, **encoding}
    if da is not None and da.ndim == 3:
        encoding["chunksizes"] = _frame_chunks(da)
    return encoding


def _frame_chunks(da: xr.DataArray) -> tuple:
    return (1,) + tuple(da.shape[1:])


def origin_text(t) -> str:
    """A time as 'YYYY-MM-DD HH:MM:SS', the form the "minutes since" units take."""
    return str(np.datetime64(t, "s")).replace("T", " ")


def minutes_since(origin, dtype: str | None = None) -> dict:
    """The encoding of a time variable: minutes since `origin` (a datetime64), standard calendar, no fill."""
    encoding = {"units": f"minutes since {origin_text(origin)}", "calendar": "standard"}
    if dtype is not None:
        encoding["dtype"] = dtype
    return {**encoding, **NO_FILL}


def _without_fill_on_coordinates(ds: xr.Dataset) -> None:
    """Coordinates and grid mappings never have missing values, so they get no _FillValue."""
    names = list(ds.coords) + [n for n in ds.data_vars if "grid_mapping_name" in ds[n].attrs]
    for name in names:
        ds[name].encoding["_FillValue"] = None


def write_dataset(ds: xr.Dataset, path, overwrite: bool = False) -> Path:
    """Write `ds` as CF-1.8 netCDF-4, atomically, with the encodings its variables carry."""
    ds = ds.copy()
    ds.attrs.setdefault("Conventions", "CF-1.8")
    _without_fill_on_coordinates(ds)
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4")
    return Path(path)
