"""Geography of a radar grid: latitude/longitude of every pixel, graticule levels, optional map lines.

`open_radar` keeps the file's x/y pixel-centre coordinates (metres or km) and its grid-mapping variable as
the scalar coordinate ``crs``. From those, `latlon` computes 2-D latitude and longitude (WGS 84 degrees)
with pyproj. Geography is a bonus, never a requirement: every function here answers None when the grid
mapping is missing or not understood, instead of raising.

Coastlines and borders come from cartopy's Natural Earth shapefiles only when cartopy is installed AND the
files are already on disk; nothing is ever downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# Attributes that hold a complete CRS description, in order of preference (exact before derived).
_WKT_ATTRS = ("crs_wkt", "spatial_ref")
_PROJ4_ATTRS = ("proj4", "proj4text", "proj4_params", "proj_params")
_KM_UNITS = {"km", "kilometre", "kilometer", "kilometres", "kilometers"}
_METRE_UNITS = {"m", "metre", "meter", "metres", "meters", ""}
_DEGREE_UNITS = {"degrees_east", "degree_east", "degrees_north", "degree_north", "degrees", "degree"}


# ------------------------------------------------------------------------------------ grid mapping


def grid_mapping_attrs(da) -> dict | None:
    """Attributes of the grid-mapping variable carried by ``da`` (its ``crs`` coordinate), or None."""
    coords = getattr(da, "coords", None)
    if coords is None:
        return None
    name = getattr(da, "attrs", {}).get("grid_mapping")
    for candidate in (name, "crs", "spatial_ref", "proj"):
        if candidate and candidate in coords and coords[candidate].ndim == 0:
            attrs = dict(coords[candidate].attrs)
            if attrs:
                return attrs
    return None


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.strip() if isinstance(value, str) and value.strip() else None


def crs_from_attrs(attrs: dict):
    """A pyproj CRS from grid-mapping attributes (WKT, then proj4, then CF parameters), or None."""
    try:
        from pyproj import CRS
    except ImportError:
        return None
    candidates = [_text(attrs.get(k)) for k in _WKT_ATTRS + _PROJ4_ATTRS]
    for text in candidates:
        if text is None:
            continue
        try:
            return CRS.from_user_input(text)
        except Exception:  # pyproj raises CRSError and others for texts it cannot parse
            continue
    if "grid_mapping_name" in attrs:
        try:
            return CRS.from_cf({k: _cf_value(v) for k, v in attrs.items()})
        except Exception:
            return None
    return None


def _cf_value(value):
    """netCDF attributes arrive as numpy scalars/arrays; pyproj's CF reader wants plain Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size > 1 else value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------ coordinates


def _axis_values(da, name: str) -> tuple[np.ndarray, str] | None:
    """1-D coordinate ``name`` as floats with its lower-case units, or None."""
    coords = getattr(da, "coords", None)
    if coords is None or name not in coords or coords[name].ndim != 1:
        return None
    c = coords[name]
    if not np.issubdtype(c.dtype, np.number):
        return None
    return np.asarray(c.values, dtype=float), str(c.attrs.get("units", "")).strip().lower()


def projected_metres(da) -> tuple[np.ndarray, np.ndarray] | None:
    """The x and y pixel-centre coordinates of ``da`` in metres (km are converted), or None."""
    x, y = _axis_values(da, "x"), _axis_values(da, "y")
    if x is None or y is None:
        return None
    out = []
    for values, units in (x, y):
        if units in _KM_UNITS:
            values = values * 1000.0
        elif units not in _METRE_UNITS:
            return None
        out.append(values)
    return out[0], out[1]


def grid_spacing_m(da) -> float | None:
    """The mean pixel size in metres (mean of |dx| and |dy|), or None without projected coordinates."""
    xy = projected_metres(da)
    if xy is None or len(xy[0]) < 2 or len(xy[1]) < 2:
        return None
    dx = abs(float(xy[0][-1] - xy[0][0])) / (len(xy[0]) - 1)
    dy = abs(float(xy[1][-1] - xy[1][0])) / (len(xy[1]) - 1)
    return 0.5 * (dx + dy) if dx > 0 and dy > 0 else None


def latlon(da) -> tuple[np.ndarray, np.ndarray] | None:
    """2-D (y, x) latitude and longitude in degrees (WGS 84) of every pixel centre of ``da``.

    ``da`` is a DataArray as `nowcast.radar.open_radar` returns it (or a frame of one): 1-D ``x``/``y``
    coordinates and a ``crs`` grid-mapping coordinate. Returns None, never raises, when the grid mapping
    is missing or not understood, or when the coordinates are not projected metres/km.
    """
    try:
        return _latlon(da)
    except Exception:  # geography is optional: an odd file must never break a forecast or a plot
        return None


def latlon_coords(da) -> dict | None:
    """``{"lat": DataArray, "lon": DataArray}`` on (y, x) with CF attributes, ready to assign as coordinates
    of a forecast (``da.assign_coords(geo.latlon_coords(da))``), or None when `latlon` is None."""
    import xarray as xr

    ll = latlon(da)
    if ll is None:
        return None
    lat, lon = ll
    return {
        "lat": xr.DataArray(lat, dims=("y", "x"), attrs={
            "standard_name": "latitude", "long_name": "latitude of the pixel centre", "units": "degrees_north"}),
        "lon": xr.DataArray(lon, dims=("y", "x"), attrs={
            "standard_name": "longitude", "long_name": "longitude of the pixel centre", "units": "degrees_east"}),
    }


def _latlon(da):
    x, y = _axis_values(da, "x"), _axis_values(da, "y")
    if x is not None and y is not None and x[1] in _DEGREE_UNITS and y[1] in _DEGREE_UNITS:
        lon2d, lat2d = np.meshgrid(x[0], y[0])  # already a latitude-longitude grid
        return lat2d, lon2d
    attrs = grid_mapping_attrs(da)
    xy = projected_metres(da)
    if attrs is None or xy is None:
        return None
    crs = crs_from_attrs(attrs)
    if crs is None:
        return None
    from pyproj import CRS, Transformer

    xx, yy = np.meshgrid(xy[0], xy[1])
    if crs.is_geographic:
        return None  # degrees in metre-labelled coordinates: inconsistent, do not guess
    to_wgs84 = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_wgs84.transform(xx, yy)
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        return None
    if np.abs(lat).max() > 90.0 or np.abs(lon).max() > 540.0:
        return None
    return lat, lon


# ------------------------------------------------------------------------------------ graticule


def nice_step(span: float, max_lines: int = 6) -> float:
    """A round graticule step in degrees (from a fixed ladder) giving at most ``max_lines`` lines over span."""
    for step in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 90.0):
        if span / step <= max_lines:
            return step
    return 90.0


def graticule_levels(values: np.ndarray, max_lines: int = 6) -> np.ndarray:
    """Round values (multiples of a nice step) strictly inside the range of ``values``."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return np.array([])
    lo, hi = float(finite.min()), float(finite.max())
    step = nice_step(hi - lo, max_lines)
    first = math.ceil(lo / step) * step
    levels = np.arange(first, hi + 1e-9, step)
    return np.round(levels[(levels > lo) & (levels < hi)], 6)


def graticule_lines(lat: np.ndarray, lon: np.ndarray, max_lines: int = 6) -> dict[str, np.ndarray]:
    """The latitude and longitude levels to draw as contour lines over a grid: {"lat": ..., "lon": ...}.

    Plots draw them with ``contour(lat, levels=...)`` / ``contour(lon, levels=...)`` on the image axes,
    which follows the projection's curvature without any map library.
    """
    return {"lat": graticule_levels(lat, max_lines), "lon": graticule_levels(lon, max_lines)}


def format_degrees(value: float, axis: str) -> str:
    """'60°N', '25°E', '7.5°E', '0°' for graticule labels."""
    if abs(value) < 1e-9:
        return "0\u00b0"
    hemi = ("N" if value > 0 else "S") if axis == "lat" else ("E" if value > 0 else "W")
    return f"{abs(value):g}\u00b0{hemi}"


# ------------------------------------------------------------------------------------ coastlines


NATURAL_EARTH_LAYERS = (("physical", "coastline"), ("cultural", "admin_0_boundary_lines_land"))


def local_natural_earth_files(resolution: str = "50m") -> list[Path]:
    """Natural Earth coastline/border shapefiles that cartopy already has on disk (never downloads).

    Empty when cartopy is not installed or its data were never fetched.
    """
    try:
        import cartopy
    except Exception:  # not installed, or broken: geography is optional
        return []
    roots = []
    for key in ("pre_existing_data_dir", "data_dir"):
        root = cartopy.config.get(key) if isinstance(getattr(cartopy, "config", None), dict) else None
        if root:
            roots.append(Path(root))
    found = []
    for category, name in NATURAL_EARTH_LAYERS:
        for root in roots:
            candidate = root / "shapefiles" / "natural_earth" / category / f"ne_{resolution}_{name}.shp"
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def map_lines(da, resolution: str = "50m") -> list[np.ndarray]:
    """Coastlines and borders over the grid of ``da`` as (n, 2) arrays of projected x, y in metres.

    Empty (never an error, never a download) without a known grid mapping, cartopy, or its local data.
    """
    try:
        files = local_natural_earth_files(resolution)
        if not files:
            return []
        attrs = grid_mapping_attrs(da)
        xy = projected_metres(da)
        crs = crs_from_attrs(attrs) if attrs else None
        if crs is None or xy is None:
            return []
        return _project_shapes(files, crs, xy)
    except Exception:
        return []


def _project_shapes(files, crs, xy) -> list[np.ndarray]:
    from cartopy.io import shapereader
    from pyproj import CRS, Transformer

    to_grid = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)
    x, y = xy
    pad_x, pad_y = 0.05 * abs(x[-1] - x[0]), 0.05 * abs(y[-1] - y[0])
    xmin, xmax = min(x[0], x[-1]) - pad_x, max(x[0], x[-1]) + pad_x
    ymin, ymax = min(y[0], y[-1]) - pad_y, max(y[0], y[-1]) + pad_y
    lines = []
    for path in files:
        for geom in shapereader.Reader(str(path)).geometries():
            for part in getattr(geom, "geoms", [geom]):
                lon, lat = np.asarray(part.coords.xy if hasattr(part, "coords") else part.exterior.xy)
                px, py = to_grid.transform(lon, lat)
                px, py = np.asarray(px), np.asarray(py)
                inside = (px >= xmin) & (px <= xmax) & (py >= ymin) & (py <= ymax)
                if inside.any():
                    lines.append(np.column_stack([px, py]))
    return lines
