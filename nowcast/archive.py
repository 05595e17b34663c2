"""Radar archives read lazily: many files (typically one frame each) read a window at a time.

`nowcast.radar.open_radar` learns from the first file where the data and its time live (a `Layout`),
then, for an archive too large to hold in memory, scans every file's times only (`scan_times`, kept in
an index cache so that the next open of the same files is quick) and returns a DataArray backed by an
`ArchiveArray`: xarray's lazy indexing hands it the frames a window needs, it reads them from their
files, converts them to dBZ with the same function as the eager path, and keeps the last few in a
bounded cache (evaluation windows overlap). Memory therefore depends on the window, not the archive.

Files are read with netCDF4 directly (a quarter of the time `xarray.open_dataset` takes per file; xarray's
`open_mfdataset` takes longer still and builds a task graph whose every read costs time in proportion to
the number of files) and decoded by xarray's own per-variable CF decoding, so values equal the eager path's
exactly. Such a DataArray works with dask too (``seq.chunk({"time": 1})``), though nowcast does not need it.

The index cache (`default_cache_dir`) holds one small .npz per archive, keyed by the files' paths, sizes and
modification times and by the layout: a file changed in place is scanned again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import netCDF4
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.conventions import decode_cf_variable
from xarray.core import indexing

from . import formats
from .errors import NowcastError

INDEX_VERSION = 1
# Decoded frames kept per archive: evaluation windows overlap, so consecutive batches reuse frames. A batch
# of 8 windows of 15 frames spans 22 frames at stride 1; the bounds keep memory flat for small and large grids.
FRAME_CACHE_BYTES = 64 * 2**20
FRAME_CACHE_FRAMES = 128
_NC_LOCK = threading.Lock()  # the netCDF-C and HDF5 libraries are not thread-safe


@dataclass(frozen=True)
class Layout:
    """Where a file keeps the radar field and its time, learnt from an archive's first file.

    dims and sizes are the variable's dimensions as stored; time_dim is None for per-frame files, whose
    time is the scalar variable time_var; picks say how each extra dimension is dropped:
    (dim, index, None) takes one index, (dim, None, "max"|"mean") combines it.
    """

    variable: str
    dims: tuple
    sizes: tuple  # sizes of every dimension but time, in the order of dims
    time_dim: str | None
    time_var: str
    y_dim: str
    x_dim: str
    picks: tuple = ()
    format: str = "netcdf"  # or an image format of nowcast.formats (one frame a file, read by its reader)


def shape_frames(da: xr.DataArray, layout: Layout, frame_time=None) -> xr.DataArray:
    """The variable as (time, y, x): the frame's time added to a per-frame field, extra dims dropped."""
    time_dim = layout.time_dim
    if time_dim is None:
        da = da.expand_dims(time=frame_time if frame_time is not None else np.zeros(1, "datetime64[ns]"))
        time_dim = "time"
    for dim, index, reduce in layout.picks:
        da = da.isel({dim: index}) if reduce is None else getattr(da, reduce)(dim=dim, skipna=True, keep_attrs=True)
    return da.transpose(time_dim, layout.y_dim, layout.x_dim).rename({time_dim: "time"})


def unreadable(path: Path, exc: Exception) -> NowcastError:
    """The one-line error for a file netCDF cannot open: not netCDF at all, or damaged."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError:
        magic = b""
    if not (magic.startswith(b"CDF") or magic.startswith(b"\x89HDF")):
        return NowcastError("is not a netCDF file (unrecognised file signature)", path)
    return NowcastError(f"cannot be read as netCDF ({reason}); the file may be truncated", path)


def _open_nc(path: Path) -> netCDF4.Dataset:
    try:
        nc = netCDF4.Dataset(path, "r")
    except Exception as exc:  # netCDF4 raises OSError, RuntimeError ... for unreadable files
        raise unreadable(path, exc) from None
    nc.set_auto_maskandscale(False)  # raw values: xarray's decoding below does what open_dataset does
    return nc


def _decoded(var, key=()) -> xr.Variable:
    """A netCDF4 variable's raw values decoded the way xarray.open_dataset decodes each variable."""
    raw = np.asarray(var[key] if key else var[...])
    attrs = {k: var.getncattr(k) for k in var.ncattrs()}
    return decode_cf_variable(var.name, xr.Variable(var.dimensions, raw, attrs))


def _as_frames(decoded: xr.Variable, layout: Layout) -> np.ndarray:
    """(time, y, x) float32 from a decoded variable: `shape_frames` done in numpy (no xarray objects to
    build for every frame read) unless an extra dimension is combined, which xarray's reduction does."""
    if any(reduce is not None for _, _, reduce in layout.picks):
        return shape_frames(xr.DataArray(decoded), layout).values.astype(np.float32)
    arr, dims = np.asarray(decoded.values), list(decoded.dims)
    for dim, index, _ in layout.picks:
        arr = np.take(arr, index, axis=dims.index(dim))
        dims.remove(dim)
    time_dim = layout.time_dim
    if time_dim is None:
        arr, time_dim = arr[None], "time"
        dims.insert(0, time_dim)
    order = [dims.index(d) for d in (time_dim, layout.y_dim, layout.x_dim)]
    return np.transpose(arr, order).astype(np.float32)


def _check_layout(nc, path: Path, layout: Layout):
    var = nc.variables.get(layout.variable)
    if var is None:
        raise NowcastError(f"has no variable {layout.variable!r} (the archive's first file has it)", path)
    sizes = tuple(len(nc.dimensions[d]) for d in var.dimensions if d != layout.time_dim)
    if tuple(var.dimensions) != layout.dims or sizes != layout.sizes:
        shape = "x".join(map(str, sizes))
        raise NowcastError(f"variable {layout.variable!r} is {shape} on {tuple(var.dimensions)}, unlike the "
                           f"archive's first file ({'x'.join(map(str, layout.sizes))} on {layout.dims}): "
                           "files have different grids", path)
    return var


@dataclass(frozen=True)
class RawTimes:
    """One file's time values as stored, and the attributes that decode them (units, calendar ...)."""

    values: np.ndarray  # 1-D
    attrs: tuple  # sorted (name, value) pairs, as a key: files stored alike decode together

    def decode(self) -> np.ndarray:
        attrs = dict(self.attrs)
        t = decode_cf_variable("time", xr.Variable(("time",), self.values, attrs)).values
        return t if np.issubdtype(t.dtype, np.datetime64) else None


def read_time_values(path: Path, layout: Layout) -> RawTimes:
    """The stored times of one archive file, after checking it has the first file's layout."""
    if layout.format != "netcdf":
        with _NC_LOCK:
            t = formats.read_time(path, layout.format)
        return RawTimes(np.array([t], dtype="datetime64[ns]"), ())
    with _NC_LOCK:
        nc = _open_nc(path)
        try:
            _check_layout(nc, path, layout)
            tvar = nc.variables.get(layout.time_dim or layout.time_var)
            shape_ok = tvar is not None and (tvar.ndim == 0 if layout.time_dim is None
                                             else tvar.dimensions == (layout.time_dim,))
            raw = RawTimes(np.array(tvar[...], ndmin=1),  # one small array a file: kept until all are decoded
                           tuple(sorted((k, tvar.getncattr(k)) for k in tvar.ncattrs()))) if shape_ok else None
        except NowcastError:
            raise
        except Exception as exc:  # a damaged header or variable
            raise unreadable(path, exc) from None
        finally:
            nc.close()
    if raw is None:
        raise NowcastError(f"has no time {layout.time_dim or layout.time_var!r} like the archive's first file", path)
    return raw


def decode_times(raw, files: list[Path]) -> list[np.ndarray]:
    """Every file's times as int64 ns, from `raw` (an iterable of RawTimes, one per file, consumed as it
    comes). Files whose times are stored alike (same units, calendar, type) are decoded in one call:
    decoding is elementwise, and a call per file costs as much as opening the file."""
    groups: dict = {}  # key -> (attrs, file numbers, stored values): one attrs object per group, not per file
    for i, r in enumerate(raw):
        attrs, members, values = groups.setdefault((r.values.dtype.str, repr(r.attrs)), (r.attrs, [], []))
        members.append(i)
        values.append(r.values)
    out: list = [None] * len(files)
    for attrs, members, values in groups.values():
        t = RawTimes(np.concatenate(values), attrs).decode()
        if t is None:
            raise NowcastError("has times that are not dates (check the time variable's units)", files[members[0]])
        t = t.astype("datetime64[ns]").astype(np.int64)
        for i, part in zip(members, np.split(t, np.cumsum([v.size for v in values])[:-1])):
            if part.size > 1 and np.any(np.diff(part) <= 0):
                raise NowcastError("times are not increasing within the file", files[i])
            out[i] = part
    return out


def read_frames(path: Path, layout: Layout, start: int, stop: int) -> np.ndarray:
    """Frames start..stop-1 of one file as (n, H, W) float32, decoded as xarray.open_dataset decodes them."""
    if layout.format != "netcdf":
        return _image_frames(path, layout)
    with _NC_LOCK:
        nc = _open_nc(path)
        try:
            var = _check_layout(nc, path, layout)
            key = tuple(slice(start, stop) if d == layout.time_dim else slice(None) for d in var.dimensions)
            decoded = _decoded(var, key)
        except NowcastError:
            raise
        except Exception as exc:  # a damaged chunk shows only when the data are read
            raise unreadable(path, exc) from None
        finally:
            nc.close()
    return _as_frames(decoded, layout)


def _image_frames(path: Path, layout: Layout) -> np.ndarray:
    """The one frame of a file in an image format (ODIM, KNMI, PGM, GeoTIFF, GIF) as (1, H, W) float32."""
    with _NC_LOCK:  # h5py shares the HDF5 library's global state too
        ds = formats.read_dataset(path, layout.format)
    var = ds.get(layout.variable)
    if var is None or var.dims != layout.dims or var.shape != layout.sizes:
        found = "x".join(map(str, var.shape)) if var is not None else "no"
        raise NowcastError(f"holds {found} {layout.variable!r} field, unlike the archive's first file "
                           f"({'x'.join(map(str, layout.sizes))}): files have different grids or quantities", path)
    return _as_frames(var.variable, layout)


# ----------------------------------------------------------------------------- the index


def default_cache_dir() -> Path:
    """Where archive indexes are kept: $NOWCAST_CACHE_DIR, else $XDG_CACHE_HOME/nowcast, else ~/.cache/nowcast."""
    if os.environ.get("NOWCAST_CACHE_DIR"):
        return Path(os.environ["NOWCAST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nowcast"


def _index_key(files: list[Path], layout: Layout) -> str:
    # a file changed in place (size or modification time) invalidates the index
    h = hashlib.sha256(json.dumps([INDEX_VERSION, repr(layout)]).encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _load_index(path: Path, key: str, n_files: int) -> list[np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or z["counts"].size != n_files:
                return None
            return np.split(z["times"], np.cumsum(z["counts"])[:-1])
    except Exception:  # a missing, partial or foreign cache file is simply rebuilt
        return None


def _save_index(path: Path, key: str, times: list[np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, key=np.array(key), counts=np.array([t.size for t in times], dtype=np.int64),
                 times=np.concatenate(times))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder only costs the next open a scan


def scan_times(files: list[Path], layout: Layout, cache_dir: Path | None) -> list[np.ndarray]:
    """Each file's frame times (int64 ns), from the index cache when the same files were scanned before."""
    key = path = None
    if cache_dir is not None:
        key = _index_key(files, layout)
        path = Path(cache_dir) / "archive-index" / f"{key[:40]}.npz"
        cached = _load_index(path, key, len(files))
        if cached is not None:
            return cached
    times = decode_times((read_time_values(f, layout) for f in files), files)
    if path is not None:
        _save_index(path, key, times)
    return times


@dataclass
class FrameIndex:
    """Where each frame of the sequence comes from: file number and index within that file."""

    times: np.ndarray  # datetime64[ns], the sequence's time axis
    file_of: np.ndarray
    in_file: np.ndarray
    duplicates: int = 0  # frames dropped because an earlier file had the same time


def order_frames(per_file: list[np.ndarray]) -> FrameIndex:
    """The sequence the files make: sorted by time (stable), a repeated time kept from the first file only."""
    counts = [t.size for t in per_file]
    times = np.concatenate(per_file)
    # int32: 8 bytes a frame for where it lives, beside its 8-byte time (files and frames per file < 2**31)
    file_of = np.repeat(np.arange(len(per_file), dtype=np.int32), counts)
    in_file = np.concatenate([np.arange(c, dtype=np.int32) for c in counts])
    duplicates = 0
    if len(per_file) > 1:
        order = np.argsort(times, kind="stable")
        times, file_of, in_file = times[order], file_of[order], in_file[order]
        _, first = np.unique(times, return_index=True)
        duplicates = times.size - first.size
        if duplicates:
            keep = np.sort(first)
            times, file_of, in_file = times[keep], file_of[keep], in_file[keep]
    return FrameIndex(times.astype("datetime64[ns]"), file_of, in_file, duplicates)


# ------------------------------------------------------------------------------ the array


class ArchiveArray(BackendArray):
    """The archive's frames as a lazily indexed (time, y, x) float32 array in dBZ.

    convert(values, path) turns a file's decoded values into dBZ (and refuses unphysical ones, naming
    the file). Reads go through a lock and a bounded cache of converted frames; `reads` counts the frames
    read from files, for tests and benchmarks.
    """

    def __init__(self, files: list[Path], index: FrameIndex, layout: Layout, frame_shape: tuple,
                 convert: Callable[[np.ndarray, Path], np.ndarray]):
        self.files = [os.fspath(f) for f in files]  # strings: a season's paths take a few MB, Paths far more
        self.file_of, self.in_file = index.file_of, index.in_file
        self.layout, self.convert = layout, convert
        self.shape = (int(index.times.size),) + tuple(int(s) for s in frame_shape)
        self.dtype = np.dtype(np.float32)
        frame_bytes = 4 * int(np.prod(frame_shape))
        self.cache_frames = max(1, min(FRAME_CACHE_FRAMES, FRAME_CACHE_BYTES // frame_bytes))
        self.reads = 0
        self._reset()

    def _reset(self) -> None:
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):  # picklable (process pools, dask workers): no lock, no cached frames
        state = dict(self.__dict__)
        del state["_cache"], state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    @property
    def cached(self) -> int:
        """Frames held in the cache now."""
        return len(self._cache)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._get)

    def _get(self, key: tuple) -> np.ndarray:
        kt, ky, kx = key
        n = self.shape[0]
        positions = np.arange(*kt.indices(n)) if isinstance(kt, slice) else np.arange(n)[kt]
        with self._lock:
            frames = self._frames(np.atleast_1d(positions))
        out = frames[:, ky][:, :, kx] if not isinstance(ky, (int, np.integer)) else frames[:, ky][:, kx]
        return out[0] if np.ndim(positions) == 0 else out

    def _frames(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((positions.size,) + self.shape[1:], dtype=np.float32)
        missing = []
        for i, p in enumerate(positions):
            frame = self._cache.get(int(p))
            if frame is None:
                missing.append(i)
            else:
                self._cache.move_to_end(int(p))
                out[i] = frame
        for run in self._runs(positions, missing):
            self._read_run(positions, run, out)
        return out

    def _runs(self, positions: np.ndarray, missing: list[int]) -> list[list[int]]:
        """Missing requests grouped into runs of consecutive frames of one file: one read each."""
        runs: list[list[int]] = []
        for i in missing:
            p = int(positions[i])
            if runs:
                q = int(positions[runs[-1][-1]])
                if self.file_of[q] == self.file_of[p] and self.in_file[p] == self.in_file[q] + 1:
                    runs[-1].append(i)
                    continue
            runs.append([i])
        return runs

    def _read_run(self, positions: np.ndarray, run: list[int], out: np.ndarray) -> None:
        first = int(positions[run[0]])
        path = Path(self.files[int(self.file_of[first])])
        start = int(self.in_file[first])
        block = self.convert(read_frames(path, self.layout, start, start + len(run)), path)
        self.reads += len(run)
        for j, i in enumerate(run):
            out[i] = block[j]
            self._cache[int(positions[i])] = block[j]
            if len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)


def lazy_variable(array: ArchiveArray) -> xr.Variable:
    """The (time, y, x) variable of a DataArray that reads from `array` only what is indexed."""
    return xr.Variable(("time", "y", "x"), indexing.LazilyIndexedArray(array))


def is_lazy(da) -> bool:
    """True when the data of a DataArray are not in memory (a lazily read archive, or a dask array)."""
    variable = getattr(da, "variable", None)
    return variable is not None and not variable._in_memory  # xarray has no public flag for this


def source_of(da) -> ArchiveArray | None:
    """The ArchiveArray a DataArray reads from (after any indexing), else None: its counters for tests and
    benchmarks. It follows xarray's lazy-indexing wrappers, which have no public accessor."""
    data = getattr(getattr(da, "variable", None), "_data", None)
    while data is not None and not isinstance(data, ArchiveArray):
        data = getattr(data, "array", None)
    return data
