"""Unit conventions shared by every part of the tool (see docs/conventions.md).

Inside the tool reflectivity is in dBZ, float32. No echo is the floor (-10 dBZ); no data is NaN.
The network sees dBZ clipped to [-10, 70] and scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np

DBZ_FLOOR = -10.0
DBZ_CEIL = 70.0
MP_A = 200.0  # Marshall-Palmer Z = a R^b
MP_B = 1.6
PIXEL_SCALE = 95.0 / 255.0  # 8-bit pixels: dBZ = pixel * 95/255 - 10
PIXEL_OFFSET = -10.0


def rainrate_to_dbz(rate, a: float = MP_A, b: float = MP_B) -> np.ndarray:
    """Rain rate (mm/h) to dBZ with Z = a R^b; zero or tiny rain gives the floor, NaN stays NaN."""
    rate = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dbz = 10.0 * np.log10(a * np.power(np.where(rate > 0, rate, np.nan), b))
    dbz = np.where(np.isnan(rate), np.nan, np.where(rate > 0, dbz, DBZ_FLOOR))
    return apply_floor(dbz).astype(np.float32)


def dbz_to_rainrate(dbz, a: float = MP_A, b: float = MP_B) -> np.ndarray:
    """dBZ to rain rate (mm/h), inverse of rainrate_to_dbz (the floor maps to a tiny positive rate)."""
    dbz = np.asarray(dbz, dtype=np.float64)
    return np.power(np.power(10.0, dbz / 10.0) / a, 1.0 / b)


def apply_floor(dbz) -> np.ndarray:
    """Values below the no-echo floor become the floor; NaN (no data) is kept."""
    dbz = np.asarray(dbz)
    return np.where(dbz < DBZ_FLOOR, DBZ_FLOOR, dbz)


def dbz_to_unit(dbz, no_data: float = DBZ_FLOOR, dtype=np.float32) -> np.ndarray:
    """dBZ -> network scale [0, 1]; NaN (no data) becomes `no_data` dBZ first: the floor (0) for the network.

    Scores pass ``no_data=nan`` (and float64) to keep no data apart from no echo.
    """
    dbz = np.asarray(dbz, dtype=dtype)
    if not np.isnan(no_data):
        dbz = np.nan_to_num(dbz, nan=no_data)
    return ((np.clip(dbz, DBZ_FLOOR, DBZ_CEIL) - DBZ_FLOOR) / (DBZ_CEIL - DBZ_FLOOR)).astype(dtype)


def unit_to_dbz(x) -> np.ndarray:
    """Network scale [0, 1] -> dBZ (clipped to the valid range first)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return (x * (DBZ_CEIL - DBZ_FLOOR) + DBZ_FLOOR).astype(np.float32)
