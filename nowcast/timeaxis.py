"""The time axis of a radar sequence: its regular step, its gaps, and its runs of evenly spaced frames.

One rule for reading, scoring windows, training samples and plots: the regular step is the most common
difference between consecutive frames (ties go to the shortest, so a gap is never the regular step).
Frames exactly one regular step apart belong to the same run; any other difference (a gap, a repeated
or out-of-order time) starts a new run, and nothing that needs consecutive frames may span it.

Everything here is arithmetic on numpy datetime64 arrays; the callers decide what a problem means for
the user (an error when reading, a skipped window when scoring).
"""

from __future__ import annotations

import numpy as np

MINUTE = np.timedelta64(1, "m")


def as_datetimes(times) -> np.ndarray:
    """Times as datetime64[ns], the one resolution every comparison here uses."""
    return np.asarray(times).astype("datetime64[ns]")


def regular_step(times) -> np.timedelta64 | None:
    """The sequence's regular step: the most common difference between consecutive frames (None for < 2)."""
    times = np.asarray(times)
    if times.size < 2:
        return None
    diffs = np.diff(as_datetimes(times)).astype(np.int64)
    values, counts = np.unique(diffs, return_counts=True)
    # np.unique sorts, and argmax takes the first of equal counts: ties go to the shortest step
    return np.timedelta64(int(values[np.argmax(counts)]), "ns")


def valid_times(last, step, leads: int) -> np.ndarray:
    """The valid times of leads 1..leads after a frame at ``last``: last + k x step (datetime64[ns])."""
    return np.datetime64(last, "ns") + np.timedelta64(step, "ns") * np.arange(1, int(leads) + 1)


def minutes(step) -> float | None:
    """A time step in minutes (float); None stays None."""
    return None if step is None else float(step / MINUTE)


def regular_pairs(times, step=None) -> np.ndarray:
    """Boolean (n - 1,): frames i and i + 1 are exactly one regular step apart."""
    times = as_datetimes(times)
    step = regular_step(times) if step is None else step
    return np.diff(times) == step


def runs(times) -> np.ndarray | None:
    """Number the runs of evenly spaced frames: 0 for the first run, +1 after every break.

    Datetimes use `regular_step`; plain numbers (a frame index, hours as floats) use the smallest positive
    step, compared with a relative tolerance. ``None`` (no times) gives None; a single frame is one run.
    """
    if times is None:
        return None
    t = np.asarray(times)
    if t.size < 2:
        return np.zeros(t.size, dtype=np.int64)
    if np.issubdtype(t.dtype, np.datetime64):
        breaks = ~regular_pairs(t)
    else:
        d = np.diff(t.astype(np.float64))
        positive = d[d > 0]
        if positive.size == 0:  # no forward step at all: every frame is its own run
            return np.arange(t.size, dtype=np.int64)
        breaks = ~np.isclose(d, positive.min(), rtol=1e-6, atol=0)
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def first_off_grid(times, step) -> int | None:
    """Index i of the first pair (i, i + 1) whose difference is not a whole number of steps, else None."""
    diffs = np.diff(as_datetimes(times)).astype(np.int64)
    off = diffs % int(np.asarray(step).astype("timedelta64[ns]").astype(np.int64)) != 0
    return int(np.argmax(off)) if off.any() else None


def gaps(times, step) -> list[tuple[int, int]]:
    """(i, missing frames) for every gap between frame i and i + 1 longer than one step."""
    diffs = np.diff(as_datetimes(times)).astype(np.int64)
    s = int(np.asarray(step).astype("timedelta64[ns]").astype(np.int64))
    return [(int(i), int(diffs[i] // s - 1)) for i in np.nonzero(diffs > s)[0]]


def evenly_spaced(times, step) -> bool:
    """True when every consecutive pair of `times` is exactly `step` apart."""
    return bool(np.all(np.diff(as_datetimes(times)) == step))


def window_starts(times, length: int, stride: int = 1, step=None) -> tuple[list[int], int]:
    """Starts 0, stride, 2*stride, ... of the windows of `length` frames that lie within one run.

    Returns (starts, skipped): skipped counts the window positions dropped because they span a break.
    """
    times = as_datetimes(times)
    starts: list[int] = []
    skipped = 0
    if times.size < length:
        return starts, skipped
    breaks = np.concatenate([[0], np.cumsum(~regular_pairs(times, step))])  # breaks before each frame
    for s in range(0, times.size - length + 1, stride):
        if breaks[s + length - 1] == breaks[s]:
            starts.append(s)
        else:
            skipped += 1
    return starts, skipped
