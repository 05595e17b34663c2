"""KNMI HDF5 radar composites (RAD_NL25_*: the KNMI Data Centre's image format).

The values of image1/image_data become physical through image1/calibration's formula
("GEO=0.01*PV+0.0"); calibration_missing_data and calibration_out_of_image are no data. The quantity is
named by image1's image_geo_parameter (accumulated precipitation in mm, or reflectivity in dBZ); the
accumulation period and the valid time come from overview's product_datetime_start and _end.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import NowcastError
from .frame import RadarFrame, parse_time

_FORMULA = re.compile(r"GEO\s*=\s*([-+0-9.eE]+)\s*\*\s*PV\s*([-+]\s*[0-9.eE]+)?")
KNMI_TIME_FORMAT = "%d-%b-%Y;%H:%M:%S.%f"


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode(errors="replace") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _number(group, name: str, path: Path) -> float:
    if name not in group.attrs:
        raise NowcastError(f"is KNMI HDF5 without {group.name}/{name}", path)
    return float(np.asarray(group.attrs[name]).reshape(-1)[0])


def _units(parameter: str, path: Path) -> str:
    p = parameter.upper()
    if "[MM]" in p or "PRECIPITATION" in p:
        return "mm/h" if "RATE" in p or "MM/H" in p else "mm"
    if "DBZ" in p or "REFLECTIVITY" in p:
        return "dBZ"
    raise NowcastError(f"is KNMI HDF5 with a quantity nowcast does not know ({parameter!r})", path)


def _values(image, path: Path) -> np.ndarray:
    calibration = image["calibration"].attrs if "calibration" in image else {}
    match = _FORMULA.search(_text(calibration.get("calibration_formulas", b"")))
    if match is None:
        raise NowcastError("is KNMI HDF5 without a calibration formula (GEO=a*PV+b)", path)
    gain, offset = float(match.group(1)), float((match.group(2) or "0").replace(" ", ""))
    raw = image["image_data"][...]
    values = (raw.astype(np.float64) * gain + offset).astype(np.float32)
    for name in ("calibration_missing_data", "calibration_out_of_image"):
        if name in calibration:
            values[raw == np.asarray(calibration[name]).reshape(-1)[0]] = np.nan
    return values


def _projection(geographic, path: Path) -> tuple[str, float]:
    """The proj4 string in metres, and the factor from the file's pixel unit (km in RAD_NL25) to metres."""
    proj4 = _text(geographic["map_projection"].attrs.get("projection_proj4_params", b"")).strip()
    if not proj4:
        raise NowcastError("is KNMI HDF5 without geographic/map_projection's proj4 parameters", path)
    to_m = 1000.0 if _text(geographic.attrs.get("geo_dim_pixel", b"KM")).upper().startswith("KM") else 1.0
    # RAD_NL25 states its ellipsoid in km (+a=6378.137): give pyproj metres, like the grid
    proj4 = re.sub(r"\+([ab])=([0-9.]+)", lambda m: f"+{m.group(1)}={float(m.group(2)) * 1000:g}"
                   if float(m.group(2)) < 1e5 else m.group(0), proj4)
    proj4 = proj4.replace(" y_0=", " +y_0=")  # a known typo in some KNMI files
    return proj4, to_m


def _grid(geographic, shape: tuple, path: Path):
    proj4, to_m = _projection(geographic, path)
    col0, row0 = _number(geographic, "geo_column_offset", path), _number(geographic, "geo_row_offset", path)
    dx, dy = _number(geographic, "geo_pixel_size_x", path), _number(geographic, "geo_pixel_size_y", path)
    ny, nx = shape
    # projected coordinate of pixel (i, j) = (offset + index + 0.5) * pixel size; dy < 0 for north-up rows
    x = (col0 + np.arange(nx) + 0.5) * dx * to_m
    y = (row0 + np.arange(ny) + 0.5) * dy * to_m
    return proj4, x, y


def _times(f, path: Path) -> tuple[np.datetime64, np.datetime64 | None]:
    overview = f["overview"].attrs if "overview" in f else {}
    end = overview.get("product_datetime_end", f["image1"].attrs.get("image_datetime_valid"))
    if end is None:
        raise NowcastError("is KNMI HDF5 without overview/product_datetime_end", path)
    valid = parse_time(_text(end).title(), KNMI_TIME_FORMAT, path, "product_datetime_end")
    start = overview.get("product_datetime_start")
    return valid, (parse_time(_text(start).title(), KNMI_TIME_FORMAT, path, "product_datetime_start")
                   if start is not None else None)


def read_knmi(path: Path) -> RadarFrame:
    import h5py

    with h5py.File(path, "r") as f:
        image = f["image1"]
        parameter = _text(image.attrs.get("image_geo_parameter", b""))
        units = _units(parameter, path)
        values = _values(image, path)
        projection, x, y = _grid(f["geographic"], values.shape, path)
        valid, start = _times(f, path)
        product = _text(image.attrs.get("image_product_name", b"KNMI"))
    if len(y) > 1 and y[1] > y[0]:  # rows stored south to north: turn north-up
        values, y = values[::-1], y[::-1]
    return RadarFrame(values, units, valid, projection, x, y, source=f"KNMI HDF5 {product}",
                      start_time=start if units == "mm" and start is not None and start < valid else None,
                      quantity=parameter)


def read_knmi_time(path: Path) -> np.datetime64:
    import h5py

    with h5py.File(path, "r") as f:
        return _times(f, path)[0]
