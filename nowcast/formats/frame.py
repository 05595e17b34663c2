"""One radar image read from a file of any format, and how it becomes a CF dataset.

Every reader returns a `RadarFrame`: the values as physical quantities (gain and offset applied, no data as
NaN, "undetect" as no echo), the units, the valid time and the grid. `to_dataset` turns it into the
xarray Dataset a per-frame CF netCDF file would give, so that `nowcast.radar` reads every format the way
it reads netCDF (units, accumulation period, grid mapping, lat/lon all follow).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import NowcastError

NO_ECHO_DBZ = -32.0  # "undetect" in dBZ: any value below nowcast's -10 dBZ floor means no echo
NO_ECHO_RAIN = 0.0  # "undetect" in mm/h or mm


@dataclass
class RadarFrame:
    """A single radar image with what nowcast needs to know about it."""

    values: np.ndarray  # (y, x), the first row is the northern edge; NaN = no data
    units: str | None  # "dBZ", "mm/h", "mm" (accumulation) or None (undeclared: --units decides)
    time: np.datetime64  # valid time (the end of an accumulation)
    projection: str  # anything pyproj.CRS accepts: a proj4 string, WKT or "EPSG:n"
    x: np.ndarray  # pixel centres in metres, west to east
    y: np.ndarray  # pixel centres in metres, north to south
    source: str  # the format and product, for the dataset's attributes
    start_time: np.datetime64 | None = None  # an accumulation's start, when the file states it
    quantity: str = ""  # what the file calls the field (DBZH, RATE, ...)
    stored_dtype: np.dtype | None = None  # integer pixels without units: how they were stored


def frame_grid(x_left: float, y_top: float, dx: float, dy: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of a north-up grid from its upper-left outer corner and pixel sizes (metres)."""
    x = x_left + (np.arange(nx) + 0.5) * abs(dx)
    y = y_top - (np.arange(ny) + 0.5) * abs(dy)
    return x, y


def parse_time(text: str, fmt: str, path: Path, what: str) -> np.datetime64:
    """A time string of the file's metadata as datetime64[ns]; an error naming the file otherwise."""
    try:
        return np.datetime64(datetime.strptime(text.strip(), fmt), "ns")
    except ValueError:
        raise NowcastError(f"has a {what} {text.strip()!r} that is not a time ({fmt})", path) from None


# File-name patterns for formats whose metadata hold no time, tried in this order (documented in
# docs/conventions.md): 14 digits YYYYMMDDhhmmss, 12 digits YYYYMMDDhhmm, MeteoSwiss YYDDDhhmm after 3 letters.
_NAME_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{14})(?!\d)"), "%Y%m%d%H%M%S"),
    (re.compile(r"(?<!\d)(\d{12})(?!\d)"), "%Y%m%d%H%M"),
    (re.compile(r"^[A-Z]{3}(\d{9})"), "%y%j%H%M"),
)


def time_from_name(path: Path) -> np.datetime64:
    """The valid time written in a file name, by the documented patterns."""
    for pattern, fmt in _NAME_PATTERNS:
        match = pattern.search(path.name)
        if match:
            try:
                return np.datetime64(datetime.strptime(match.group(1), fmt), "ns")
            except ValueError:
                continue
    raise NowcastError("records no time in its metadata and its name holds none (YYYYMMDDhhmm[ss])", path)


def crs_variable(projection: str, path: Path) -> xr.DataArray:
    """The CF grid-mapping variable of a projection (WKT, proj4 and CF parameters)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_user_input(projection)
    except CRSError as exc:
        raise NowcastError(f"has a projection pyproj does not understand ({projection!r}: {exc})", path) from None
    with warnings.catch_warnings():  # pyproj says which CF parameters it cannot express; crs_wkt keeps all
        warnings.simplefilter("ignore", UserWarning)
        cf = crs.to_cf()
    attrs = {k: v for k, v in cf.items() if isinstance(v, (str, int, float))}
    if not projection.startswith(("EPSG:", "PROJCS", "PROJCRS")):
        attrs["proj4"] = projection
    return xr.DataArray(np.int32(0), attrs=attrs)


def to_dataset(frame: RadarFrame, path: Path) -> xr.Dataset:
    """The frame as the Dataset a per-frame CF netCDF file would give (see the module docstring)."""
    name = "reflectivity" if frame.units == "dBZ" else "precipitation"
    attrs = {"grid_mapping": "crs", "long_name": frame.quantity or name}
    if frame.units is not None:
        attrs["units"] = frame.units
    data = xr.Variable(("y", "x"), frame.values, attrs)
    if frame.stored_dtype is not None:
        data.encoding["dtype"] = frame.stored_dtype  # what nowcast.radar's 8-bit rule looks at
    coords = {
        "x": ("x", np.asarray(frame.x, dtype=float), {"units": "m", "standard_name": "projection_x_coordinate"}),
        "y": ("y", np.asarray(frame.y, dtype=float), {"units": "m", "standard_name": "projection_y_coordinate"}),
    }
    variables = {name: data, "crs": crs_variable(frame.projection, path),
                 "time": xr.Variable((), np.datetime64(frame.time, "ns"), {"standard_name": "time"})}
    if frame.units == "mm" and frame.start_time is not None:
        # what nowcast.radar reads an accumulation's period from
        variables["start_time"] = xr.Variable((), np.datetime64(frame.start_time, "ns"))
        variables["valid_time"] = xr.Variable((), np.datetime64(frame.time, "ns"))
    return xr.Dataset(variables, coords=coords, attrs={"source": frame.source})
