"""MeteoSwiss 8-bit GIF composites (AQC "Acquire" and CPC "CombiPrecip" precipitation products).

The GIF comment names the product and time (`PRDT=AQC151351545`: product, then YYDDDhhmm) and the
accumulation period in minutes (`ACCUm=000005`). The palette indices are the product's legend: index i is
a precipitation amount of ((10^((i - 71.5) / 20)) / 316)^(1 / 1.5) mm over the period (Z = 316 R^1.5 on
a half-dBZ scale), 0, 1 and 251-254 are no echo and 255 is no data. The grid is MeteoSwiss's Swiss
composite: 710 x 640 pixels of 1 km in the Swiss LV03 projection (EPSG:21781).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import NowcastError
from .frame import RadarFrame, frame_grid, parse_time, time_from_name

SWISS_GRID = dict(x_left=255000.0, y_top=480000.0, dx=1000.0, dy=1000.0, nx=710, ny=640)
SWISS_CRS = "EPSG:21781"
PRODUCTS = ("AQC", "CPC")
_PRDT = re.compile(r"PRDT=([A-Z]{3})(\d{9})?")
_ACCUM = re.compile(r"ACCUm=(\d+)")


def legend() -> np.ndarray:
    """Palette index -> precipitation (mm over the product's period); NaN = no data."""
    index = np.arange(256, dtype=np.float64)
    amount = (10.0 ** ((index - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    amount[(index < 2) | ((index > 250) & (index < 255))] = 0.0
    amount[255] = np.nan
    return amount.astype(np.float32)


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise NowcastError(f"is a GIF image that cannot be decoded ({exc}); it may be truncated", path) from None
    return image


def _product(comment: str, path: Path) -> tuple[str, str | None, float]:
    """Product code, its YYDDDhhmm time (None when absent) and accumulation minutes, from the GIF comment."""
    match = _PRDT.search(comment)
    if match is None:
        raise NowcastError("is a GIF image without MeteoSwiss's product comment (PRDT=...): "
                           "not a MeteoSwiss composite", path)
    accum = _ACCUM.search(comment)
    return match.group(1), match.group(2), float(accum.group(1)) if accum else 5.0


def _times(comment: str, path: Path):
    product, stamp, minutes = _product(comment, path)
    valid = parse_time(stamp, "%y%j%H%M", path, "PRDT time") if stamp else time_from_name(path)
    return product, valid, valid - np.timedelta64(int(minutes * 60), "s")


def _comment(image) -> str:
    comment = image.info.get("comment", b"")
    return comment.decode(errors="replace") if isinstance(comment, bytes) else str(comment)


def read_mch_gif(path: Path) -> RadarFrame:
    with _open(path) as image:
        comment = _comment(image)
        product, valid, start = _times(comment, path)
        if product not in PRODUCTS:
            raise NowcastError(f"is a MeteoSwiss {product} GIF; nowcast reads the {' and '.join(PRODUCTS)} "
                               "products", path)
        if image.mode != "P" or image.size != (SWISS_GRID["nx"], SWISS_GRID["ny"]):
            raise NowcastError(f"is a {image.mode} GIF of {image.size[0]} x {image.size[1]} pixels, not "
                               "MeteoSwiss's 710 x 640 palette composite", path)
        indices = np.asarray(image)
    values = legend()[indices]
    x, y = frame_grid(**SWISS_GRID)
    return RadarFrame(values, "mm", valid, SWISS_CRS, x, y, source=f"MeteoSwiss GIF {product}",
                      start_time=start, quantity=f"{product} precipitation")


def read_mch_gif_time(path: Path) -> np.datetime64:
    with _open(path) as image:
        return _times(_comment(image), path)[1]
