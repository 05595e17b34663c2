"""Radar file formats other than netCDF: ODIM HDF5, KNMI HDF5, FMI PGM, GeoTIFF and MeteoSwiss GIF.

`detect_format` names a file's format from its content; `read_dataset` reads a file in one of these
formats as the xarray Dataset a per-frame CF netCDF file would give (`frame.to_dataset`), so that
`nowcast.radar.open_radar` treats every format alike. `read_time` reads only a file's valid time (what
a lazy archive scans). netCDF itself is read by `nowcast.radar` and `nowcast.archive`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import NowcastError
from ..options import OptionError
from .detect import FORMAT_NAMES, detect_format
from .frame import RadarFrame, to_dataset
from .geotiff import read_geotiff, read_geotiff_time
from .knmi import read_knmi, read_knmi_time
from .mch_gif import read_mch_gif, read_mch_gif_time
from .odim import read_odim, read_odim_time
from .pgm import read_pgm, read_pgm_time

__all__ = ["FORMAT_NAMES", "RadarFrame", "check_format_name", "detect_format", "read_dataset", "read_frame",
           "read_time"]

DISPLAY_NAMES = {"odim": "ODIM HDF5", "knmi": "KNMI HDF5", "pgm": "FMI PGM", "geotiff": "GeoTIFF",
                 "mch-gif": "MeteoSwiss GIF"}
_READERS = {
    "odim": (read_odim, read_odim_time),
    "knmi": (read_knmi, read_knmi_time),
    "pgm": (read_pgm, read_pgm_time),
    "geotiff": (read_geotiff, read_geotiff_time),
    "mch-gif": (read_mch_gif, read_mch_gif_time),
}


def check_format_name(name: str | None) -> str | None:
    """A --format value, lower-cased; an error listing the names for an unknown one."""
    if name is None:
        return None
    key = name.strip().lower()
    if key not in FORMAT_NAMES:
        raise OptionError(f"{{format}} {name!r} is not a format nowcast reads; use one of {', '.join(FORMAT_NAMES)}",
                          "format")
    return key


def _reader(fmt: str, which: int):
    if fmt not in _READERS:
        raise ValueError(f"no image reader for format {fmt!r}")
    return _READERS[fmt][which]


def _guarded(read, path: Path, fmt: str):
    """Run a reader; a damaged file it did not foresee still gives one line naming the file."""
    try:
        return read(path)
    except NowcastError:
        raise
    except Exception as exc:  # h5py, PIL, tifffile and numpy raise many types for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NowcastError(f"cannot be read as {DISPLAY_NAMES[fmt]} ({reason}); the file may be in another "
                           "format, damaged or truncated", path) from None


def read_frame(path: Path, fmt: str) -> RadarFrame:
    """One file in format `fmt` (not netcdf) as a RadarFrame."""
    return _guarded(_reader(fmt, 0), Path(path), fmt)


def read_dataset(path: Path, fmt: str) -> xr.Dataset:
    """One file in format `fmt` (not netcdf) as a per-frame CF Dataset."""
    return to_dataset(read_frame(path, fmt), Path(path))


def read_time(path: Path, fmt: str) -> np.datetime64:
    """The valid time of one file in format `fmt` (not netcdf), reading as little as the format allows."""
    return _guarded(_reader(fmt, 1), Path(path), fmt)
