"""ODIM_H5 2.x composites (OPERA, RMI, ...): the EUMETNET OPERA data model for radar in HDF5.

Attributes may sit at the data, dataset or file level (`what`, `where` groups); the innermost wins, as
the ODIM specification says. Quantities read: DBZH and TH (dBZ), RATE (mm/h) and ACRR (mm over the
product's start-end period). Stored values are raw * gain + offset; `undetect` is no echo, `nodata` is NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import NowcastError
from .frame import NO_ECHO_DBZ, NO_ECHO_RAIN, RadarFrame, frame_grid, parse_time

# Quantities in order of preference when a file holds several (a composite with DBZH and RATE: DBZH).
QUANTITY_UNITS = {"DBZH": "dBZ", "TH": "dBZ", "RATE": "mm/h", "ACRR": "mm"}


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode(errors="replace") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _attr(groups, group: str, name: str, default=None):
    """`group/name` from the innermost of `groups` (data, dataset, file) that has it."""
    for g in groups:
        if group in g and name in g[group].attrs:
            return g[group].attrs[name]
    return default


def _fields(f) -> list[tuple[str, tuple]]:
    """(quantity, (data group, dataset group, file)) for every datasetN/dataN in the file."""
    found = []
    for ds_name in sorted(k for k in f if k.startswith("dataset")):
        dataset = f[ds_name]
        for d_name in sorted(k for k in dataset if k.startswith("data") and "data" in dataset[k]):
            groups = (dataset[d_name], dataset, f)
            found.append((_text(_attr(groups, "what", "quantity", b"")).strip().upper(), groups))
    return found


def _choose(f, path: Path) -> tuple[str, tuple]:
    fields = _fields(f)
    for quantity in QUANTITY_UNITS:
        for q, groups in fields:
            if q == quantity:
                return q, groups
    have = ", ".join(sorted({q for q, _ in fields})) or "none"
    raise NowcastError(f"is ODIM_H5 but holds none of the quantities nowcast reads "
                       f"({', '.join(QUANTITY_UNITS)}); it has: {have}", path)


def _values(groups, quantity: str) -> np.ndarray:
    """Physical values: gain and offset applied, undetect = no echo, nodata = NaN."""
    raw = groups[0]["data"][...]
    gain = float(_attr(groups, "what", "gain", 1.0))
    offset = float(_attr(groups, "what", "offset", 0.0))
    values = (raw.astype(np.float64) * gain + offset).astype(np.float32)
    undetect, nodata = _attr(groups, "what", "undetect"), _attr(groups, "what", "nodata")
    if undetect is not None:
        values[raw == undetect] = NO_ECHO_DBZ if QUANTITY_UNITS[quantity] == "dBZ" else NO_ECHO_RAIN
    if nodata is not None:
        values[raw == nodata] = np.nan
    return values


def _times(groups, path: Path) -> tuple[np.datetime64, np.datetime64 | None]:
    """The nominal time (file what/date+time), and the start of the period for an accumulation."""
    date, time = _attr(groups[2:], "what", "date"), _attr(groups[2:], "what", "time")
    if date is None or time is None:
        raise NowcastError("is ODIM_H5 without what/date and what/time", path)
    valid = parse_time(_text(date) + _text(time)[:6], "%Y%m%d%H%M%S", path, "what/date+time")
    start = None
    sdate, stime = _attr(groups, "what", "startdate"), _attr(groups, "what", "starttime")
    edate, etime = _attr(groups, "what", "enddate"), _attr(groups, "what", "endtime")
    if None not in (sdate, stime, edate, etime):
        s = parse_time(_text(sdate) + _text(stime)[:6], "%Y%m%d%H%M%S", path, "startdate+starttime")
        e = parse_time(_text(edate) + _text(etime)[:6], "%Y%m%d%H%M%S", path, "enddate+endtime")
        start = valid - (e - s) if e > s else None
    return valid, start


def _grid(groups, shape: tuple, path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """The projection and pixel centres: projected UL_x/UL_y when given, else the corners' lon/lat projected."""
    from pyproj import Proj

    projdef = _attr(groups, "where", "projdef")
    xscale, yscale = _attr(groups, "where", "xscale"), _attr(groups, "where", "yscale")
    if projdef is None or xscale is None or yscale is None:
        raise NowcastError("is ODIM_H5 without where/projdef, xscale and yscale: its grid is unknown", path)
    projdef = _text(projdef).strip()
    ny, nx = shape
    ul_x, ul_y = _attr(groups, "where", "UL_x"), _attr(groups, "where", "UL_y")
    if ul_x is None or ul_y is None:
        corners = [_attr(groups, "where", k) for k in ("LL_lon", "LL_lat", "UL_lon", "UL_lat", "UR_lon", "UR_lat")]
        if any(c is None for c in corners):
            raise NowcastError("is ODIM_H5 without corner coordinates (where/UL_lon ... UR_lat)", path)
        proj = Proj(projdef)
        ll, ul, ur = (proj(float(corners[i]), float(corners[i + 1])) for i in (0, 2, 4))
        # the corner longitudes and latitudes are the outer corners of the corner pixels
        ul_x, ul_y = min(ll[0], ul[0]), max(ul[1], ur[1])
    x, y = frame_grid(float(ul_x), float(ul_y), float(xscale), float(yscale), nx, ny)
    return projdef, x, y


def read_odim(path: Path) -> RadarFrame:
    """The preferred quantity (DBZH, TH, RATE, ACRR) of an ODIM_H5 composite."""
    import h5py

    with h5py.File(path, "r") as f:
        quantity, groups = _choose(f, path)
        values = _values(groups, quantity)
        valid, start = _times(groups, path)
        projection, x, y = _grid(groups, values.shape, path)
        version = _text(f.attrs.get("Conventions", b"ODIM_H5"))
        product = _text(_attr(groups, "what", "product", b"")).strip()
    return RadarFrame(values, QUANTITY_UNITS[quantity], valid, projection, x, y,
                      source=f"{version} {product} {quantity}".replace("  ", " "), quantity=quantity,
                      start_time=start if quantity == "ACRR" else None)


def read_odim_time(path: Path) -> np.datetime64:
    import h5py

    with h5py.File(path, "r") as f:
        _, groups = _choose(f, path)
        return _times(groups, path)[0]
