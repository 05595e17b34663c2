"""Windows of (inputs, targets) cut from radar sequences, for scoring and training.

A window is n_in consecutive input frames followed by n_out target frames. Window starts lie on a
fixed grid 0, stride, 2*stride, ... of the sequence. The sequence's regular step is the most common
time step (`nowcast.timeaxis`); a window whose frames are not all exactly one regular step apart (a gap, a repeated or
out-of-order time) is skipped and counted, never silently stitched across the gap.

Frames are read a batch of windows at a time, so a lazily opened archive (`nowcast.radar.open_radar`
with ``lazy``) is never read whole: memory depends on the batch, not on the archive's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from . import timeaxis
from .errors import NowcastError
from .timeaxis import regular_step


def _times(seq) -> np.ndarray:
    if "time" not in getattr(seq, "dims", ()):
        raise NowcastError(f"sequence needs a 'time' dimension, got dims {getattr(seq, 'dims', None)}")
    times = np.asarray(seq["time"].values)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise NowcastError(f"the 'time' coordinate must hold datetimes, got {times.dtype}")
    return times


@dataclass
class WindowSet:
    """The windows of one sequence. Iterating yields (inputs, targets, reference_time):
    inputs float32 (n_in, H, W), targets float32 (n_out, H, W), reference_time the time of the last
    input frame (numpy datetime64)."""

    seq: object  # xarray DataArray (time, y, x) in dBZ
    n_in: int
    n_out: int
    stride: int
    starts: list[int] = field(default_factory=list)
    skipped: int = 0  # window positions dropped because they span a gap in time
    step: np.timedelta64 | None = None

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def too_short(self) -> bool:
        """True when the sequence has fewer frames than one window needs."""
        return self.seq.sizes["time"] < self.n_in + self.n_out

    @property
    def step_minutes(self) -> float | None:
        return timeaxis.minutes(self.step)

    @property
    def reference_times(self) -> np.ndarray:
        times = np.asarray(self.seq["time"].values)
        return times[np.asarray(self.starts, dtype=int) + self.n_in - 1] if self.starts else times[:0]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.datetime64]]:
        for inputs, targets, refs in self.batches(1):
            yield inputs[0], targets[0], refs[0]

    def batches(self, batch_size: int = 8) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (inputs (B, n_in, H, W), targets (B, n_out, H, W), reference_times (B,)).

        Each batch reads the frames its windows use once, and only those: a lazily read archive
        (`nowcast.archive`) is then read a batch at a time, whatever its length or the stride.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        length = self.n_in + self.n_out
        times = np.asarray(self.seq["time"].values)
        for i in range(0, self.count, batch_size):
            starts = np.asarray(self.starts[i:i + batch_size])
            idx = starts[:, None] + np.arange(length)[None, :]
            needed, where = np.unique(idx, return_inverse=True)
            frames = _read_frames(self.seq, needed)[where.reshape(idx.shape)]  # (B, length, H, W)
            yield (np.ascontiguousarray(frames[:, :self.n_in]),
                   np.ascontiguousarray(frames[:, self.n_in:]),
                   times[starts + self.n_in - 1])


def _read_frames(seq, positions: np.ndarray) -> np.ndarray:
    """The frames at sorted `positions` as float32 (T, H, W); a contiguous run is read as one slice."""
    first, last = int(positions[0]), int(positions[-1])
    key = slice(first, last + 1) if last - first + 1 == positions.size else positions
    return np.asarray(seq.isel(time=key).values, dtype=np.float32)


def iter_windows(seq, n_in: int = 5, n_out: int = 10, stride: int = 1) -> WindowSet:
    """All windows of n_in + n_out frames of `seq` (an xarray DataArray with a datetime 'time' dim).

    A sequence shorter than one window gives an empty WindowSet (count 0, too_short True), not an error.
    """
    if n_in < 1 or n_out < 1:
        raise NowcastError(f"need at least one input and one target frame, got n_in={n_in}, n_out={n_out}")
    if stride < 1:
        raise NowcastError(f"stride must be at least 1, got {stride}")
    times = _times(seq)
    if seq.ndim != 3:
        raise NowcastError(f"sequence must be (time, y, x), got dims {seq.dims}")
    seq = seq.transpose("time", ...)
    step = regular_step(times)
    ws = WindowSet(seq=seq, n_in=n_in, n_out=n_out, stride=stride, step=step)
    ws.starts, ws.skipped = timeaxis.window_starts(times, n_in + n_out, stride, step)
    return ws
