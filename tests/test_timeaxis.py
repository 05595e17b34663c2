"""The one time-axis rule: regular step, gaps, runs, windows."""

from __future__ import annotations

import numpy as np

from nowcast import timeaxis

T0 = np.datetime64("2026-06-01T12:00")
MIN = np.timedelta64(1, "m")


def test_regular_step_is_the_most_common_and_ties_go_to_the_shortest():
    assert timeaxis.regular_step(T0 + np.array([0, 5, 10, 20, 25]) * MIN) == 5 * MIN
    assert timeaxis.regular_step(T0 + np.array([0, 5, 15]) * MIN) == 5 * MIN
    assert timeaxis.regular_step(np.array([T0])) is None
    assert timeaxis.minutes(timeaxis.regular_step(T0 + np.array([0, 2.5]) * 60 * np.timedelta64(1, "s"))) == 2.5


def test_gaps_runs_and_off_grid_times():
    times = T0 + np.array([0, 5, 10, 25, 30]) * MIN
    step = timeaxis.regular_step(times)
    assert timeaxis.gaps(times, step) == [(2, 2)]
    np.testing.assert_array_equal(timeaxis.runs(times), [0, 0, 0, 1, 1])
    assert timeaxis.first_off_grid(times, step) is None
    assert timeaxis.first_off_grid(T0 + np.array([0, 5, 12]) * MIN, 5 * MIN) == 1
    assert not timeaxis.evenly_spaced(times, step) and timeaxis.evenly_spaced(times[:3], step)
    np.testing.assert_array_equal(timeaxis.runs([0.0, 1.0, 2.0, 4.0]), [0, 0, 0, 1])
    assert timeaxis.runs(None) is None


def test_windows_never_span_a_gap():
    times = T0 + np.array([0, 5, 10, 15, 25, 30, 35, 40]) * MIN
    starts, skipped = timeaxis.window_starts(times, length=3, stride=1)
    assert starts == [0, 1, 4, 5] and skipped == 2
    assert timeaxis.window_starts(times[:2], length=3) == ([], 0)
