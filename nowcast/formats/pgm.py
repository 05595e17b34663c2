"""FMI PGM composites (binary PGM, gzipped or not) with FMI's metadata in the header comments.

The header's comments hold `obstime YYYYMMDDhhmm`, `param` (the quantity) and a `projection radar {...}`
block (stereographic: central longitude and latitude, true latitude, the bottom-left and top-right corners
in degrees, metres per pixel). Pixels are FMI's reflectivity code dBZ = pixel * 0.5 - 32; 0 is no echo and
the maximum value (255) is no data.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import NowcastError
from .frame import NO_ECHO_DBZ, RadarFrame, parse_time, time_from_name

FMI_GAIN, FMI_OFFSET = 0.5, -32.0
FMI_EARTH_RADIUS_M = 6371288.0  # the sphere of FMI's stereographic composite grid


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise NowcastError(f"is a gzipped PGM that cannot be decompressed ({exc}); it may be truncated", path) from None


def parse_header(data: bytes, path: Path) -> tuple[dict, tuple[int, int, int], int]:
    """The comment metadata (key -> words), (width, height, maxval), and where the pixels start."""
    meta: dict[str, list[str]] = {}
    numbers: list[int] = []
    pos = 2  # after "P5"
    while len(numbers) < 3:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if pos >= len(data):
            raise NowcastError("is a PGM file whose header ends early; it may be truncated", path)
        if data[pos:pos + 1] == b"#":
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            words = data[pos + 1:end].decode(errors="replace").split()
            if len(words) >= 2:
                meta.setdefault(words[0], words[1:])
            pos = end + 1
            continue
        end = pos
        while end < len(data) and data[end:end + 1].isdigit():
            end += 1
        if end == pos:
            raise NowcastError("is a PGM file with a damaged header (width, height, maximum value)", path)
        numbers.append(int(data[pos:end]))
        pos = end
    return meta, (numbers[0], numbers[1], numbers[2]), pos + 1  # one whitespace byte before the pixels


def _pixels(data: bytes, start: int, width: int, height: int, maxval: int, path: Path) -> np.ndarray:
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    need = width * height * dtype.itemsize
    if len(data) - start < need:
        raise NowcastError(f"is a PGM file with {len(data) - start} bytes of pixels where {width} x {height} "
                           f"need {need}; it is truncated", path)
    return np.frombuffer(data, dtype, count=width * height, offset=start).reshape(height, width)


def _grid(meta: dict, shape: tuple, path: Path):
    from pyproj import Proj

    if meta.get("type", [""])[0] != "stereographic":
        raise NowcastError("is a PGM file without FMI's stereographic projection block in its header", path)
    try:
        lon0, lat0, lat_ts = (float(meta[k][0]) for k in ("centrallongitude", "centrallatitude", "truelatitude"))
        ll_lon, ll_lat = (float(v) for v in meta["bottomleft"][:2])
        dx, dy = float(meta["metersperpixel_x"][0]), float(meta["metersperpixel_y"][0])
    except (KeyError, ValueError, IndexError) as exc:
        raise NowcastError(f"is a PGM file whose projection block lacks {exc}", path) from None
    projection = (f"+proj=stere +lon_0={lon0:g} +lat_0={lat0:g} +lat_ts={lat_ts:g} "
                  f"+a={FMI_EARTH_RADIUS_M:.0f} +b={FMI_EARTH_RADIUS_M:.0f} +x_0=0 +y_0=0 +units=m +no_defs")
    x_left, y_bottom = Proj(projection)(ll_lon, ll_lat)
    ny, nx = shape
    x = x_left + (np.arange(nx) + 0.5) * dx
    y = y_bottom + (ny - np.arange(ny) - 0.5) * dy  # the first row is the northern edge
    return projection, x, y


def _time(meta: dict, path: Path) -> np.datetime64:
    if "obstime" in meta:
        return parse_time(meta["obstime"][0], "%Y%m%d%H%M", path, "obstime")
    return time_from_name(path)


def read_pgm(path: Path) -> RadarFrame:
    data = _read_bytes(path)
    meta, (width, height, maxval), start = parse_header(data, path)
    param = " ".join(meta.get("param", ["reflectivity"]))
    if "reflectivity" not in param.lower():
        raise NowcastError(f"is a PGM file of {param!r}; nowcast reads FMI's reflectivity PGM", path)
    raw = _pixels(data, start, width, height, maxval, path)
    values = (raw * FMI_GAIN + FMI_OFFSET).astype(np.float32)
    values[raw == 0] = NO_ECHO_DBZ
    values[raw == maxval] = np.nan
    projection, x, y = _grid(meta, values.shape, path)
    return RadarFrame(values, "dBZ", _time(meta, path), projection, x, y,
                      source=f"FMI PGM {' '.join(meta.get('productname', []))} {param}".strip(), quantity=param)


def read_pgm_time(path: Path) -> np.datetime64:
    data = _read_bytes(path)  # the header is at the start; a composite decompresses in milliseconds
    return _time(parse_header(data, path)[0], path)
