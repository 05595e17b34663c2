"""Operational mode: follow a folder of radar frames and keep a fresh forecast on disk (`nowcast watch`).

`Watcher` is the loop as an object: `poll()` looks at the folder once (reads the frames that are complete,
forecasts the newest frame time when its inputs are regular), `run()` repeats that until SIGTERM/SIGINT
(or once, for cron). A notebook can drive `poll()` itself. What the loop guarantees:

* a file counts once it is complete: renamed in (inotify's IN_MOVED_TO), or its size and modification time
  unchanged over two looks (polling, or a file written in place); each file is read once, a changed file again;
* frames are kept in time order in a short rolling window, so files that arrive out of order are put back and
  memory stays flat however long the feed runs; the method (a model: loaded once) is resolved by the caller;
* each forecast goes to ``OUT_DIR/<prefix>_<YYYYmmddHHMM>.nc`` and then replaces ``latest.nc``, both
  atomically (``nowcast.atomic``), so a reader never sees half a file; a frame time forecast already (its file
  exists) is not forecast again;
* a bad file, a gap and an output that cannot be written are warnings (``NowcastWarning``), never the end of
  the loop; a stop signal ends it within seconds and leaves no temporary file.

Speed: the optical flow is pysteps' dense Lucas-Kanade, which tracks features pair by pair of consecutive frames
and then interpolates the pooled vectors; `PairwiseFlow` keeps each pair's sparse vectors, so a new frame costs
one pair instead of T-1, with a field equal to ``motion.estimate_motion``'s. Measured (benchmarks/watch_flow.json):
1.3 s of 5.9 s on a 1226 x 760 composite, nothing on a 128 x 128 grid: the interpolation onto the grid dominates.
The rest of a cycle's saving over a cold `nowcast predict` is the model loaded once and each frame read once.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import glob
import hashlib
import os
import select
import signal
import struct
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .atomic import atomic_output
from .errors import NowcastError, NowcastWarning
from .options import OptionError
from .units import DBZ_FLOOR

LATEST = "latest.nc"
STAMP_DIGITS = 12  # YYYYmmddHHMM
SETTLE_SECONDS = 0.5  # a file written in place must keep its size this long to count as complete
EXTRA_FRAMES = 3  # frames kept beyond the method's inputs: room for late, out-of-order files
STARTUP_FILES_PER_INPUT = 2  # at start, a folder's backlog is read only this many files per input frame


class Stopped(BaseException):
    """Raised by the signal handler: unwinds a forecast in progress (atomic writers remove their temporaries).

    A BaseException, so that the loop's own fault handling (``except Exception``) never swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Cycle:
    """What one forecast cycle did: the frame time, the file, and where its time went (seconds)."""

    frame_time: np.datetime64
    path: Path
    method: str
    latency: float  # from the newest file's arrival (its ctime: a rename sets it) to latest.nc replaced
    read: float
    forecast: float
    write: float

    def line(self) -> str:
        return (f"{_fmt_time(self.frame_time)} UTC  {self.path.name}  method {self.method}  latency "
                f"{self.latency:.2f} s (read {self.read:.2f} s, forecast {self.forecast:.2f} s, "
                f"write {self.write:.2f} s)")


def _fmt_time(t) -> str:
    return str(np.datetime64(t, "m")).replace("T", " ")


def stamp(t) -> str:
    """YYYYmmddHHMM of a frame time, as forecast file names carry it."""
    return str(np.datetime64(t, "m")).replace("-", "").replace("T", "").replace(":", "")


# ------------------------------------------------------------------------------------ following a folder


class _Inotify:
    """Linux inotify through libc (no dependency): which names were renamed in or closed after writing."""

    IN_CLOSE_WRITE, IN_MOVED_TO = 0x8, 0x80
    _HEADER = struct.Struct("iIII")

    def __init__(self, folder: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self.fd, os.fsencode(folder), self.IN_CLOSE_WRITE | self.IN_MOVED_TO) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch failed")

    def wait(self, timeout: float) -> set[str]:
        """Names renamed in during at most `timeout` seconds (returns at the first event)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        renamed: set[str] = set()
        if not ready:
            return renamed
        with contextlib.suppress(BlockingIOError):
            data = os.read(self.fd, 1 << 16)
            at = 0
            while at + self._HEADER.size <= len(data):
                _, mask, _, size = self._HEADER.unpack_from(data, at)
                name = data[at + self._HEADER.size: at + self._HEADER.size + size].rstrip(b"\0")
                at += self._HEADER.size + size
                if mask & self.IN_MOVED_TO:
                    renamed.add(os.fsdecode(name))
        return renamed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _inotify(folder: Path):
    """An inotify watch on `folder`, or None where there is none (not Linux, no libc, limits reached)."""
    try:
        return _Inotify(folder)
    except (OSError, AttributeError):
        return None


class Feed:
    """The complete input files of a folder that have not been taken yet.

    A file is complete when it was renamed in, or when its (size, mtime) are the same at two looks; a file is
    taken once, and again only if it changes. Names no longer in the folder are forgotten (flat memory).
    """

    def __init__(self, folder: Path, pattern: str = "*.nc"):
        self.folder, self.pattern = Path(folder), pattern
        self.pending: dict[str, tuple] = {}
        self.taken: dict[str, tuple] = {}

    def _listing(self) -> dict[str, tuple]:
        found = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                # hidden names are writers' temporaries (ours included); they count once renamed
                if entry.name.startswith(".") or not fnmatch.fnmatch(entry.name, self.pattern):
                    continue
                with contextlib.suppress(OSError):
                    if entry.is_file():
                        st = entry.stat()
                        found[entry.name] = (st.st_size, st.st_mtime_ns, st.st_ctime)
        return found

    def ready(self, renamed=()) -> list[tuple[Path, float]]:
        """(path, arrival time) of the files complete since the last look, sorted by name."""
        listing = self._listing()
        out = []
        for name, (size, mtime, ctime) in listing.items():
            sig = (size, mtime)
            if self.taken.get(name) == sig:
                continue
            if name in renamed or self.pending.get(name) == sig:
                self.taken[name] = sig
                self.pending.pop(name, None)
                out.append((self.folder / name, ctime))
            else:
                self.pending[name] = sig
        for book in (self.pending, self.taken):
            for name in [n for n in book if n not in listing]:
                del book[name]
        return sorted(out)


# ------------------------------------------------------------------------------------ optical flow, pair by pair


class PairwiseFlow:
    """pysteps' dense Lucas-Kanade (``motion.estimate_motion``) with each frame pair's sparse vectors remembered.

    dense_lucaskanade tracks features on every pair of consecutive frames independently, pools the vectors,
    removes outliers, declusters and interpolates. The pairs of the previous window are still valid when a new
    frame arrives, so only the newest pair is tracked again; pooling and interpolation are redone, in the same
    order, with the same functions and arguments, so the field is the same as estimate_motion's.
    """

    def __init__(self, remember: int = 16):
        from .motion import LK_CHUNK_PIXELS  # torch: imported only when a flow is wanted

        self._chunk_pixels = LK_CHUNK_PIXELS
        self._pairs: OrderedDict = OrderedDict()
        self._remember = remember
        self.tracked = 0  # pairs tracked (the rest came from memory): what the benchmark counts

    def __call__(self, frames_dbz) -> np.ndarray:
        lk = _lk_module()
        frames = np.nan_to_num(np.asarray(frames_dbz, dtype=np.float64), nan=DBZ_FLOOR)
        if frames.ndim != 3 or frames.shape[0] < 2:
            raise ValueError(f"motion needs frames shaped (T >= 2, H, W), got {frames.shape}")
        keys = [hashlib.sha1(np.ascontiguousarray(f).tobytes()).hexdigest() for f in frames]
        xy, uv = np.empty(shape=(0, 2)), np.empty(shape=(0, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LK's singular matrices on echo-free areas, as in estimate_motion
            for n in range(frames.shape[0] - 1):
                found = self._pair(lk, frames[n], frames[n + 1], (keys[n], keys[n + 1]))
                if found is not None:
                    xy, uv = np.append(xy, found[0], axis=0), np.append(uv, found[1], axis=0)
            velocity = self._dense(lk, xy, uv, frames.shape[1:])
        return np.nan_to_num(np.asarray(velocity, dtype=np.float32), nan=0.0)

    def _pair(self, lk, prev: np.ndarray, nxt: np.ndarray, key):
        """The sparse vectors (xy, uv) of one pair, as dense_lucaskanade's loop body finds them; None if none."""
        if key in self._pairs:
            self._pairs.move_to_end(key)
            return self._pairs[key]
        self.tracked += 1
        prvs_img, next_img = np.ma.masked_invalid(prev.copy()), np.ma.masked_invalid(nxt.copy())
        np.ma.set_fill_value(prvs_img, prvs_img.min())
        np.ma.set_fill_value(next_img, next_img.min())
        prvs_img = lk.morph_opening(prvs_img, prvs_img.min(), 3)
        next_img = lk.morph_opening(next_img, next_img.min(), 3)
        points = lk.feature.get_method("shitomasi")(prvs_img).astype(np.float32)
        found = None
        if points.shape[0] > 0:
            xy_, uv_ = lk.track_features(prvs_img, next_img, points)
            found = (xy_, uv_) if xy_.shape[0] > 0 else None
        self._pairs[key] = found
        if len(self._pairs) > self._remember:
            self._pairs.popitem(last=False)
        return found

    def _dense(self, lk, xy, uv, shape) -> np.ndarray:
        """Outliers out, declustered, interpolated onto the grid (dense_lucaskanade's defaults)."""
        if xy.shape[0] == 0:
            return np.zeros((2,) + tuple(shape))
        outliers = lk.detect_outliers(uv, 3, xy, 30, False)
        xy, uv = lk.decluster(xy[~outliers, :], uv[~outliers, :], 20, 1, False)
        if xy.shape[0] == 0:
            return np.zeros((2,) + tuple(shape))
        per_axis = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / self._chunk_pixels))))
        return lk.utils.get_method("idwinterp2d")(xy, uv, np.arange(shape[1]), np.arange(shape[0]),
                                                  nchunks=per_axis * per_axis)


def _lk_module():
    with contextlib.redirect_stdout(None):  # pysteps announces its configuration file on import
        from pysteps.motion import lucaskanade
    return lucaskanade


# ------------------------------------------------------------------------------------ frames in time order


class Frames:
    """The newest frames by time (a rolling window), with the grid of the first one read."""

    def __init__(self, keep: int):
        self.keep = keep
        self.values: dict = {}  # datetime64[ns] -> (H, W) float32 dBZ
        self.sources: dict = {}  # datetime64[ns] -> file name
        self.template: xr.DataArray | None = None  # one frame: the grid's coordinates and the reading's attrs

    def add(self, seq: xr.DataArray, path: Path) -> list:
        """Put the frames of one file in place; the times added (frames older than the window are dropped)."""
        if self.template is None:
            self.template = seq.isel(time=0, drop=True)
        if seq.shape[1:] != self.template.shape:
            raise NowcastError(f"grid {seq.shape[1]}x{seq.shape[2]} differs from the feed's "
                               f"{self.template.shape[0]}x{self.template.shape[1]}", path)
        added = []
        for i, t in enumerate(seq["time"].values.astype("datetime64[ns]")):
            if t not in self.values:
                self.values[t], self.sources[t] = np.asarray(seq.values[i], dtype=np.float32), path.name
                added.append(t)
        for t in sorted(self.values)[:-self.keep]:
            del self.values[t], self.sources[t]
        return [t for t in added if t in self.values]

    def times(self) -> np.ndarray:
        return np.array(sorted(self.values), dtype="datetime64[ns]")

    def step(self):
        """The feed's step: the shortest difference between kept frames (a gap is never shorter)."""
        diffs = np.diff(self.times())
        diffs = diffs[diffs > np.timedelta64(0, "ns")]
        return diffs.min() if diffs.size else None

    def inputs(self, newest, n: int) -> xr.DataArray | None:
        """The n frames up to `newest`, one step apart, as a reflectivity sequence; None if there is a gap."""
        step = self.step()
        if step is None:
            return None
        times = newest - step * np.arange(n - 1, -1, -1)
        if any(t not in self.values for t in times):
            return None
        tpl = self.template
        out = xr.DataArray(np.stack([self.values[t] for t in times]), dims=("time",) + tpl.dims,
                           coords={**{c: tpl[c] for c in tpl.coords}, "time": ("time", times)},
                           name="reflectivity", attrs=dict(tpl.attrs))
        out.attrs["time_step_seconds"] = float(step / np.timedelta64(1, "s"))
        out.attrs["source_files"] = ", ".join(self.sources[t] for t in times)
        return out

    def gap_before(self, newest, n: int):
        """(last frame before the gap, first after it, missing frames) of the gap nearest `newest`, or None."""
        step, times = self.step(), self.times()
        times = times[times <= newest]
        if step is None:
            return None
        for a, b in zip(times[::-1][1:], times[::-1][:-1]):
            if b - a != step:
                return a, b, int((b - a) // step) - 1
        return None


# ------------------------------------------------------------------------------------ the loop


def _read_radar(path: Path) -> xr.DataArray:
    from .radar import open_radar

    return open_radar(path, lazy=False)


class Watcher:
    """Follow `in_dir` and keep a forecast of its newest frame in `out_dir` (see the module's docstring).

    method: a forecast method (``methods.resolve(...)``), made once; read: path -> (time, y, x) dBZ DataArray
    (``radar.open_radar`` by default, the CLI passes its reading options); log: where the per-cycle lines go.
    """

    def __init__(self, in_dir, out_dir, method, *, pattern: str = "*.nc", prefix: str = "forecast",
                 leads: int = 10, output_units: str | None = None, plot: bool = False, keep: int | None = None,
                 interval: float = 2.0, read=None, log=print, flow: bool = True, inotify: bool = True):
        self.in_dir, self.out_dir = Path(in_dir), Path(out_dir)
        if not self.in_dir.is_dir():
            raise NowcastError("input folder not found", self.in_dir)
        if keep is not None and keep < 1:
            raise OptionError(f"{{keep}} {keep}: keep at least 1 forecast", "keep")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NowcastError(f"cannot make the output folder ({exc.strerror})", self.out_dir) from None
        self.method, self.prefix, self.leads, self.units = method, prefix, int(leads), output_units
        self.plot, self.keep, self.interval = plot, keep, float(interval)
        self.read, self.log = read or _read_radar, log
        self.needed = max(int(getattr(method, "input_frames", 1)), 2)
        self.frames = Frames(self.needed + EXTRA_FRAMES)
        self.feed = Feed(self.in_dir, pattern)
        # a method that advects gets its flow from here, each new frame adding one tracked pair
        self.flow = PairwiseFlow() if flow and getattr(method, "uses_motion", False) else None
        self.flow_reused = self.flow is not None
        self._inotify = _inotify(self.in_dir) if inotify else None
        self._renamed: set[str] = set()
        self._warned_gaps: set = set()
        self._reading_notes: set[str] = set()
        self._started = False
        self.cycles = 0
        self._last = None  # the newest frame time forecast
        self.last_cycle: Cycle | None = None
        self._stop = threading.Event()

    @property
    def following(self) -> str:
        """How new files are noticed, in words."""
        return "inotify" if self._inotify is not None else f"polling every {self.interval:g} s"

    def forecast_path(self, t) -> Path:
        return self.out_dir / f"{self.prefix}_{stamp(t)}.nc"

    # -------------------------------------------------------------------- one look

    def poll(self) -> Cycle | None:
        """Read the files complete since the last look, and forecast the newest frame time if it is due."""
        if self._inotify is not None:  # renames since the last look, also when a notebook drives poll()
            self._renamed |= self._inotify.wait(0)
        renamed, self._renamed = self._renamed, set()
        ready = self.feed.ready(renamed)
        if not self._started:  # a long backlog: only its newest files can be inputs
            self._started = True
            most = self.needed * STARTUP_FILES_PER_INPUT
            ready = ready[-most:] if len(ready) > most else ready
        t0 = time.monotonic()
        arrival, added = None, set()
        for path, ctime in ready:
            times = self._ingest(path)
            if times:
                added.update(times)
                arrival = ctime if arrival is None else max(arrival, ctime)
        if arrival is None:
            return None
        return self._due(added, arrival, time.monotonic() - t0)

    def _ingest(self, path: Path) -> list:
        """Read one file into the window; one warning naming it when it cannot be read."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seq = self.read(path)
            added = self.frames.add(seq, path)
        except Exception as exc:  # any reader failure (netCDF, HDF5, our checks) is one bad file, not the end
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            where = "" if str(path) in text else f"{path}: "
            _warn(f"{where}{text}; skipped, the watch goes on")
            return []
        self._pass_on_notes(caught, path)
        return added

    def _pass_on_notes(self, caught, path: Path) -> None:
        """The reader's notes once per run, not once per file (every frame of a feed gets the same ones)."""
        for w in caught:
            text = str(w.message).replace(f"{path}: ", "")
            if text not in self._reading_notes and issubclass(w.category, NowcastWarning):
                self._reading_notes.add(text)
                warnings.warn(f"{path.name}: {text}", w.category, stacklevel=2)

    def _due(self, added: set, arrival: float, read_s: float) -> Cycle | None:
        """Forecast each new frame time newer than the last forecast, in time order, when its inputs are regular.

        The newest frame time counts as new too (a late file may have filled its gap). latest.nc never goes back
        in time: older frame times are only kept as inputs. A backlog (more new times than the method's inputs:
        the start, or after an outage) gets the newest forecast only: catching up beats old forecasts."""
        times = self.frames.times()
        newest = times[-1]
        todo = [t for t in times if (t in added or t == newest) and (self._last is None or t > self._last)]
        cycle = None
        for t in todo[-1:] if len(todo) > self.needed else todo:
            if self.forecast_path(t).exists():  # made before (a restart, cron): not again
                self._last = t
                continue
            past = self.frames.inputs(t, self.needed)
            if past is None:
                if t == newest:
                    self._warn_gap(newest)
                continue
            cycle = self._cycle(past, arrival, read_s) or cycle
        return cycle

    def _warn_gap(self, newest) -> None:
        gap = self.frames.gap_before(newest, self.needed)
        if gap is None or gap[:2] in self._warned_gaps:
            return
        self._warned_gaps = {gap[:2]}  # only the latest gap matters; a set that never grows
        before, after, missing = gap
        _warn(f"gap in the feed: {missing} frame(s) missing between {_fmt_time(before)} and {_fmt_time(after)} "
              f"UTC; waiting for {self.needed} regular frames before the next forecast")

    def _cycle(self, past: xr.DataArray, arrival: float, read_s: float) -> Cycle | None:
        from .forecast_file import forecast_dataarray, output_units

        t0 = time.monotonic()
        if self.flow is not None:
            values = self.method(past.values, self.leads, motion=self.flow(past.values))
        else:
            values = self.method(past.values, self.leads)
        forecast = forecast_dataarray(values, past, self.method.name)
        t1 = time.monotonic()
        newest = past["time"].values[-1]
        path = self.forecast_path(newest)
        try:
            self._write(forecast, past, path, output_units(self.units, past))
        except (OSError, NowcastError) as exc:  # disk full, permissions, folder gone: try again next frame
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            _warn(f"{path}: could not write the forecast of {_fmt_time(newest)} UTC ({reason}); "
                  "trying again at the next frame")
            return None
        cycle = Cycle(newest, path, self.method.name, time.time() - arrival, read_s, t1 - t0,
                      time.monotonic() - t1)
        self.cycles += 1
        self._last, self.last_cycle = newest, cycle
        self._housekeeping()
        self.log(cycle.line())
        return cycle

    def _write(self, forecast, past, path: Path, units: str) -> None:
        """The forecast file (and its picture), then latest.nc: each atomically, latest last."""
        from .forecast_file import write_forecast

        describe = getattr(self.method, "postprocessing", None)
        try:
            write_forecast(forecast, path, method=self.method.name, inputs=past, overwrite=True, units=units,
                           postprocessing=describe() if describe is not None else "none")
            if self.plot:
                from .plots import plot_forecast_panels

                plot_forecast_panels(past, forecast, path.with_suffix(".png"), method_name=self.method.name)
        except BaseException:
            with contextlib.suppress(OSError):  # no forecast without its picture, nor a half cycle
                path.unlink()
            raise
        _copy_atomically(path, self.out_dir / LATEST)
        if self.plot:
            _copy_atomically(path.with_suffix(".png"), self.out_dir / "latest.png")

    def _housekeeping(self) -> None:
        """--keep N: the N newest forecasts (and pictures) stay, older ones go."""
        if self.keep is None:
            return
        pattern = f"{glob.escape(self.prefix)}_{'[0-9]' * STAMP_DIGITS}"
        for suffix in (".nc", ".png"):
            for old in sorted(self.out_dir.glob(pattern + suffix))[:-self.keep]:
                with contextlib.suppress(OSError):
                    old.unlink()

    # -------------------------------------------------------------------- the loop

    def run(self, once: bool = False, handle_signals: bool = True) -> str:
        """Poll until SIGTERM/SIGINT ('SIGTERM'/'SIGINT' returned), `stop()` ('stop'), or, with once, until the
        folder is done ('once'). Signals are handled in the main thread only; elsewhere, use stop()."""
        with self._signals(handle_signals):
            try:
                looks = 0
                while not self._stop.is_set():
                    self.poll()
                    looks += 1
                    if once and (not self.feed.pending or looks > 2):
                        return "once"
                    self._wait(SETTLE_SECONDS if self.feed.pending else self.interval)
                return "stop"
            except Stopped as stop:
                return str(stop)
            finally:
                self.close()

    def stop(self) -> None:
        """End `run()` (from another thread) after the cycle in progress, within one interval."""
        self._stop.set()

    def _wait(self, seconds: float) -> None:
        if self._inotify is None:
            time.sleep(seconds)
        else:
            self._renamed |= self._inotify.wait(seconds)

    @contextlib.contextmanager
    def _signals(self, handle: bool):
        """SIGTERM and SIGINT raise Stopped where the loop is (main thread only: signals arrive there)."""
        if not handle or threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum, frame):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            raise Stopped(signum)

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def close(self) -> None:
        """Stop following the folder; remove any temporary this process left in the output folder."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        for leftover in self.out_dir.glob(f".*.{os.getpid()}.*.part*"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _copy_atomically(source: Path, target: Path) -> None:
    import shutil

    with atomic_output(target, overwrite=True) as tmp:
        shutil.copyfile(source, tmp)


def _warn(text: str) -> None:
    warnings.warn(text, NowcastWarning, stacklevel=3)
