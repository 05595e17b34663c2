import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowcast import units as U


def test_marshall_palmer_hand_values():
    # Z = 200 * 1^1.6 = 200 -> 10 log10(200) = 23.0103 dBZ
    assert U.rainrate_to_dbz(1.0) == pytest.approx(23.0103, abs=1e-4)
    # 10 mm/h: Z = 200 * 10^1.6 = 7962.1 -> 39.0103 dBZ
    assert U.rainrate_to_dbz(10.0) == pytest.approx(10 * math.log10(200) + 16, abs=1e-4)
    # custom Z-R relation a=300, b=1.4 at 2 mm/h
    assert U.rainrate_to_dbz(2.0, a=300, b=1.4) == pytest.approx(10 * math.log10(300 * 2**1.4), abs=1e-4)


def test_zero_rain_is_floor_and_nan_stays_nan():
    out = U.rainrate_to_dbz(np.array([0.0, np.nan, 1e-6]))
    assert out[0] == U.DBZ_FLOOR
    assert np.isnan(out[1])
    assert out[2] == U.DBZ_FLOOR  # 1e-6 mm/h is far below -10 dBZ


def test_pixels_rule():
    px = np.array([0, 255, 51])  # the 8-bit rule open_radar applies (tests/test_radar.py reads such files)
    np.testing.assert_allclose(px * U.PIXEL_SCALE + U.PIXEL_OFFSET, [-10.0, 85.0, 51 * 95 / 255 - 10], rtol=1e-6)


def test_scores_keep_no_data_apart_from_no_echo():
    dbz = np.array([-10, 30, np.nan])
    x = U.dbz_to_unit(dbz, no_data=np.nan, dtype=np.float64)
    assert x.dtype == np.float64 and np.isnan(x[2])
    np.testing.assert_allclose(x[:2], [0, 0.5])


def test_network_scaling_round_trip_and_clipping():
    dbz = np.array([-10, 0, 30, 70, 90, -30, np.nan], dtype=np.float32)
    x = U.dbz_to_unit(dbz)
    np.testing.assert_allclose(x, [0, 0.125, 0.5, 1, 1, 0, 0], atol=1e-7)
    np.testing.assert_allclose(U.unit_to_dbz(x[:4]), dbz[:4], atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.01, max_value=500.0))
def test_rainrate_dbz_round_trip(rate):
    dbz = float(U.rainrate_to_dbz(rate))
    back = float(U.dbz_to_rainrate(dbz))
    # in dB: 10 log10(Z_back / Z) must be within 1e-4 dB
    assert abs(10 * 1.6 * math.log10(back / rate)) < 1e-4


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-9.99, max_value=70.0))
def test_dbz_rainrate_round_trip(dbz):
    assert abs(float(U.rainrate_to_dbz(U.dbz_to_rainrate(dbz))) - dbz) < 1e-4
