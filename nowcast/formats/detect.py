"""Which format a radar file is in, from its content (signature bytes and metadata), never its name."""

from __future__ import annotations

import gzip
from pathlib import Path

from ..errors import NowcastError

# The names `--format` accepts; "netcdf" is read by xarray, the others by nowcast.formats.
FORMAT_NAMES = ("netcdf", "odim", "knmi", "pgm", "geotiff", "mch-gif")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the signature: it is found at 0, 512, 1024, 2048 ... bytes.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
GZIP_SIGNATURE = b"\x1f\x8b"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
PGM_SIGNATURE = b"P5"
NETCDF_CLASSIC = b"CDF"

# What other common files start with, so that the error can say what the file is.
_OTHER_SIGNATURES = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GRIB", "a GRIB file"),
    (b"PK\x03\x04", "a ZIP archive"), (b"%PDF", "a PDF document"), (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"), (b"P2", "a text PGM image"), (b"P6", "a PPM colour image"),
)


def _head(path: Path, size: int = 4096) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError as exc:
        raise NowcastError(f"cannot be read ({exc.strerror or exc})", path) from None


def _gunzipped_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(16)
    except (OSError, EOFError):
        return b""


def _hdf5_kind(path: Path) -> str:
    """odim, knmi or netcdf (netCDF-4 is HDF5 too) from the HDF5 file's groups and attributes."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            conventions = f.attrs.get("Conventions", b"")
            conventions = conventions.decode(errors="replace") if isinstance(conventions, bytes) else str(conventions)
            if conventions.startswith("ODIM_H5"):
                return "odim"
            if "image1" in f and "geographic" in f:
                return "knmi"
    except Exception as exc:  # h5py raises OSError, KeyError ... for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NowcastError(f"is an HDF5 file (netCDF-4, ODIM or KNMI) that cannot be read ({reason}); "
                           "it may be truncated", path) from None
    return "netcdf"


def detect_format(path: Path) -> str:
    """The format name of `path` (one of FORMAT_NAMES); a one-line error saying what it is otherwise."""
    head = _head(path)
    if head.startswith(NETCDF_CLASSIC):
        return "netcdf"
    if any(head[o:o + 8] == HDF5_SIGNATURE for o in _HDF5_OFFSETS):
        return _hdf5_kind(path)
    if head.startswith(TIFF_SIGNATURES):
        return "geotiff"
    if head.startswith(GIF_SIGNATURES):
        return "mch-gif"
    if head.startswith(PGM_SIGNATURE):
        return "pgm"
    if head.startswith(GZIP_SIGNATURE):
        inner = _gunzipped_head(path)
        if inner.startswith(PGM_SIGNATURE):
            return "pgm"
        raise unknown_format(path, f"gzip-compressed {describe(inner)}" if inner
                             else "a gzip file that cannot be decompressed (truncated?)")
    raise unknown_format(path, describe(head))


def unknown_format(path: Path, what: str) -> NowcastError:
    """The one line for a file in no format nowcast reads, saying what it seems to be."""
    return NowcastError(f"is not a netCDF file nor another radar format nowcast reads "
                        f"({', '.join(FORMAT_NAMES[1:])}): it looks like {what}", path)


def describe(head: bytes) -> str:
    """A few words on what a file's first bytes show it to be."""
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return what
    if not head:
        return "empty"
    sample = head[:512]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return f"a text file (starting {head[:16].decode(errors='replace')!r})"
    return f"an unrecognised binary file (first bytes {head[:8].hex(' ')})"
