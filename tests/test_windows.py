"""Windows from sequences: counts with stride, gaps skipped and counted, short sequences."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.errors import NowcastError
from nowcast.windows import iter_windows, regular_step

T0 = np.datetime64("2024-05-01T12:00", "ns")
STEP = np.timedelta64(5, "m")


def sequence(n, times=None, size=(6, 7)):
    """Frame i is filled with the value i, so window contents are easy to check."""
    if times is None:
        times = T0 + np.arange(n) * STEP
    data = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n,) + size).copy()
    return xr.DataArray(data, dims=("time", "y", "x"), coords={"time": times})


@pytest.mark.parametrize("stride, expected", [(1, 6), (2, 3), (3, 2), (5, 2), (6, 1), (100, 1)])
def test_counts_with_stride(stride, expected):
    ws = iter_windows(sequence(20), n_in=5, n_out=10, stride=stride)
    assert ws.count == expected == len(ws) == len(list(ws))
    assert ws.skipped == 0 and not ws.too_short
    assert ws.starts == list(range(0, 6, stride))[:expected]


def test_window_contents_and_reference_time():
    ws = iter_windows(sequence(20), n_in=5, n_out=10, stride=2)
    windows = list(ws)
    inputs, targets, ref = windows[1]  # starts at frame 2
    assert inputs.shape == (5, 6, 7) and targets.shape == (10, 6, 7)
    assert inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[:, 0, 0], np.arange(2, 7))
    np.testing.assert_array_equal(targets[:, 0, 0], np.arange(7, 17))
    assert ref == T0 + 6 * STEP  # time of the last input frame
    assert ws.step_minutes == 5.0
    np.testing.assert_array_equal(ws.reference_times, T0 + np.array([4, 6, 8]) * STEP)


def test_batches_match_iteration():
    ws = iter_windows(sequence(30), n_in=3, n_out=4, stride=1)
    assert ws.count == 24
    batches = list(ws.batches(5))
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 5, 4]
    inputs = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    refs = np.concatenate([b[2] for b in batches])
    single = list(ws)
    np.testing.assert_array_equal(inputs, np.stack([w[0] for w in single]))
    np.testing.assert_array_equal(targets, np.stack([w[1] for w in single]))
    np.testing.assert_array_equal(refs, np.array([w[2] for w in single]))
    assert inputs.shape == (24, 3, 6, 7) and targets.shape == (24, 4, 6, 7)


def test_gap_windows_skipped_and_counted():
    times = T0 + np.arange(40) * STEP
    times[20:] += STEP  # 10 minutes between frame 19 and frame 20
    ws = iter_windows(sequence(40, times), n_in=5, n_out=10, stride=1)
    # 26 start positions (0..25); those with s <= 19 <= s + 13 span the gap: s = 6..19
    assert ws.skipped == 14
    assert ws.count == 12
    assert ws.starts == list(range(0, 6)) + list(range(20, 26))
    assert ws.step == np.timedelta64(5, "m")
    for inputs, targets, _ in ws:
        frames = np.concatenate([inputs[:, 0, 0], targets[:, 0, 0]])
        assert np.all(np.diff(frames) == 1)

    ws2 = iter_windows(sequence(40, times), n_in=5, n_out=10, stride=4)
    # starts 0, 4, ..., 24: 0 and 4 fit before the gap, 20 and 24 after it; 8, 12, 16 are skipped
    assert (ws2.starts, ws2.skipped) == ([0, 4, 20, 24], 3)


def test_repeated_time_is_a_gap():
    times = T0 + np.arange(16) * STEP
    times[8] = times[7]
    ws = iter_windows(sequence(16, times), n_in=5, n_out=10)
    assert ws.count == 0 and ws.skipped == 2 and not ws.too_short


def test_too_short_sequence_gives_no_windows():
    ws = iter_windows(sequence(14), n_in=5, n_out=10)
    assert ws.count == 0 and ws.skipped == 0 and ws.too_short
    assert list(ws) == [] and list(ws.batches(4)) == []
    one = iter_windows(sequence(1), n_in=5, n_out=10)
    assert one.count == 0 and one.step is None and one.step_minutes is None
    assert iter_windows(sequence(15), n_in=5, n_out=10).count == 1


def test_other_dimension_order_and_bad_inputs():
    seq = sequence(16).transpose("y", "x", "time")
    ws = iter_windows(seq, n_in=5, n_out=10)
    inputs, targets, _ = next(iter(ws))
    assert inputs.shape == (5, 6, 7)
    with pytest.raises(NowcastError, match="time"):
        iter_windows(xr.DataArray(np.zeros((16, 4, 4)), dims=("t", "y", "x")))
    with pytest.raises(NowcastError, match="datetime"):
        iter_windows(xr.DataArray(np.zeros((16, 4, 4)), dims=("time", "y", "x"), coords={"time": np.arange(16)}))
    with pytest.raises(NowcastError):
        iter_windows(sequence(20), stride=0)
    with pytest.raises(NowcastError):
        iter_windows(sequence(20), n_in=0)


def test_regular_step_is_the_median():
    times = T0 + np.array([0, 5, 10, 15, 25, 30, 35]) * np.timedelta64(1, "m")
    assert regular_step(times) == np.timedelta64(5, "m")
