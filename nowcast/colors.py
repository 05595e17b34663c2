"""The reflectivity colour scale: 5 dBZ steps from 10 to 70 dBZ, as radar users know it; and a rain-rate scale
in mm/h (0.1 to 200 mm/h in round steps) with the same colours, for files in mm/h.

Below 10 dBZ nothing is drawn (transparent, so the white background shows: "no echo"); no data (NaN) is
drawn grey, so that it can never be mistaken for dry weather; 70 dBZ and above is purple.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap

LEVELS_DBZ = tuple(float(v) for v in range(10, 75, 5))  # 10, 15, ..., 70: 12 bins

# Light blue -> blue -> green -> yellow/orange -> red -> magenta, one colour per 5 dBZ bin.
BIN_COLORS = (
    "#b4e6f5",  # 10-15
    "#6cc3f0",  # 15-20
    "#2f86d8",  # 20-25
    "#8fdc72",  # 25-30
    "#37b135",  # 30-35
    "#167a22",  # 35-40
    "#f6e73a",  # 40-45
    "#f4b120",  # 45-50
    "#ee6a14",  # 50-55
    "#d7191c",  # 55-60
    "#a1113c",  # 60-65
    "#e03cc9",  # 65-70
)
OVER_COLOR = "#7a2fbf"  # >= 70 dBZ
NODATA_COLOR = "#9a9a9a"  # NaN: outside coverage / no data
NODATA_RGB = (0x9A, 0x9A, 0x9A)
COLORBAR_LABEL = "Reflectivity (dBZ)"
# the same 12 colours over round rain rates (mm/h), 0.1 to 200: below 0.1 mm/h is no rain
LEVELS_MMH = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0)
RAIN_COLORBAR_LABEL = "Rain rate (mm/h)"
UNITS = ("dBZ", "mm/h")


def check_units(units: str) -> str:
    """'dBZ' or 'mm/h' (the units pictures are drawn in); ValueError otherwise."""
    if units not in UNITS:
        raise ValueError(f"pictures are drawn in dBZ or mm/h, got {units!r}")
    return units


def levels(units: str = "dBZ") -> tuple[float, ...]:
    return LEVELS_DBZ if check_units(units) == "dBZ" else LEVELS_MMH


def reflectivity_cmap(units: str = "dBZ") -> tuple[ListedColormap, BoundaryNorm]:
    """(colormap, norm) for imshow/pcolormesh of dBZ fields, or of rain rates with units="mm/h"."""
    cmap = ListedColormap(list(BIN_COLORS), name="nowcast_dbz").with_extremes(
        under=(1.0, 1.0, 1.0, 0.0),  # no echo: transparent
        over=OVER_COLOR,
        bad=NODATA_COLOR,
    )
    norm = BoundaryNorm(list(levels(units)), ncolors=cmap.N, clip=False)
    return cmap, norm


def add_colorbar(fig, mappable, ax=None, units: str = "dBZ", **kwargs):
    """A labelled colour bar (dBZ, or mm/h) with a tick at every level, extended (triangle) past the last."""
    kwargs.setdefault("extend", "max")
    kwargs.setdefault("ticks", list(levels(units)))
    cbar = fig.colorbar(mappable, ax=ax, **kwargs)
    cbar.set_label(COLORBAR_LABEL if units == "dBZ" else RAIN_COLORBAR_LABEL)
    if units == "mm/h":
        cbar.ax.set_yticklabels([f"{v:g}" for v in LEVELS_MMH])
    return cbar


def dbz_to_rgba(dbz) -> np.ndarray:
    """RGBA (0-1 floats) of dBZ values with this scale; handy for tests and custom renderings."""
    cmap, norm = reflectivity_cmap()
    return cmap(norm(np.ma.masked_invalid(np.asarray(dbz, dtype=float))))


def legend_handles(units: str = "dBZ") -> list:
    """Legend entries for what the colour bar cannot show: the no-data grey and the no-echo white."""
    from matplotlib.patches import Patch

    no_echo = f"no echo (< {LEVELS_DBZ[0]:g} dBZ)" if units == "dBZ" else f"no rain (< {LEVELS_MMH[0]:g} mm/h)"
    return [
        Patch(facecolor=NODATA_COLOR, edgecolor="0.3", linewidth=0.5, label="no data / no forecast"),
        Patch(facecolor="white", edgecolor="0.3", linewidth=0.5, label=no_echo),
    ]
