"""GeoTIFF radar images (FMI's composites and generic ones), read with tifffile (no GDAL needed).

Georeferencing from the GeoKeys: the projected CRS's EPSG code, the tie point and the pixel scale.
Values and time from GDAL's metadata tag when present (FMI writes Gain, Offset, Nodata, Undetect, the
quantity's unit and the observation time there); GDAL's nodata tag is no data too. Without a gain and a
unit, integer pixels are passed on as they are (the 8-bit rule or --units/--scale/--offset apply).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from ..errors import NowcastError
from .frame import NO_ECHO_DBZ, NO_ECHO_RAIN, RadarFrame, frame_grid, parse_time, time_from_name

GDAL_METADATA_TAG, GDAL_NODATA_TAG = 42112, 42113
_ITEM = re.compile(r"<Item\s+([^>]*)>([^<]*)</Item>", re.IGNORECASE)
_XML_ATTR = re.compile(r'(\w+)="([^"]*)"')
USER_DEFINED = 32767


def gdal_items(text: str) -> dict[str, tuple[str, dict]]:
    """GDAL metadata items: lower-case name -> (value, the item's XML attributes). FMI nests one GDAL
    metadata document, escaped, inside another, so the text is unescaped until no entity is left."""
    for _ in range(4):
        if "&" not in text:
            break
        text = html.unescape(text)
    items = {}
    for attr_text, value in _ITEM.findall(text):
        attrs = dict(_XML_ATTR.findall(attr_text))
        if "name" in attrs:
            items.setdefault(attrs["name"].strip().lower(), (value.strip(), attrs))
    return items


def _item_number(items: dict, *names: str) -> float | None:
    for name in names:
        if name in items:
            try:
                return float(items[name][0])
            except ValueError:
                return None
    return None


def _units(items: dict) -> str | None:
    for name, (_, attrs) in items.items():
        if "unit" in attrs:
            return attrs["unit"]
    unittype = items.get("unittype") or items.get("units")
    return unittype[0] if unittype else None


def _grid(page, path: Path):
    geo = page.geotiff_tags or {}
    epsg = geo.get("ProjectedCSTypeGeoKey")
    if epsg is None or int(epsg) == USER_DEFINED:
        raise NowcastError("is a TIFF without a projected EPSG code in its GeoKeys (ProjectedCSTypeGeoKey): "
                           "nowcast needs a projected grid in metres", path)
    scale, tie = geo.get("ModelPixelScale"), geo.get("ModelTiepoint")
    if scale is None or tie is None or len(tie) < 6:
        raise NowcastError("is a GeoTIFF without ModelPixelScale and ModelTiepoint", path)
    i, j, x_tie, y_tie = tie[0], tie[1], tie[3], tie[4]
    x_left, y_top = x_tie - i * scale[0], y_tie + j * scale[1]
    if int(geo.get("GTRasterTypeGeoKey", 1)) == 2:  # RasterPixelIsPoint: the tie point is a pixel centre
        x_left, y_top = x_left - scale[0] / 2, y_top + scale[1] / 2
    x, y = frame_grid(x_left, y_top, scale[0], scale[1], page.shape[1], page.shape[0])
    return f"EPSG:{int(epsg)}", x, y


def _values(raw: np.ndarray, items: dict, nodata_tag, units: str | None) -> np.ndarray:
    gain, offset = _item_number(items, "gain", "scale"), _item_number(items, "offset")
    values = raw.astype(np.float32) if gain is None else (raw * gain + (offset or 0.0)).astype(np.float32)
    undetect = _item_number(items, "undetect")
    if undetect is not None:
        values[raw == undetect] = NO_ECHO_DBZ if units == "dBZ" else NO_ECHO_RAIN
    for nodata in (_item_number(items, "nodata"), nodata_tag):
        if nodata is not None:
            values[raw == nodata] = np.nan
    return values


def _time(items: dict, path: Path) -> np.datetime64:
    for name, (value, attrs) in items.items():
        if "time" in name and value.isdigit() and len(value) in (12, 14):
            return parse_time(value, "%Y%m%d%H%M%S"[:len(value) - 2], path, f"GDAL metadata {name!r}")
    return time_from_name(path)


def _open(path: Path):
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError ... for damaged files
        raise NowcastError(f"is a TIFF file that cannot be read ({exc}); it may be truncated", path) from None
    if not tif.pages or not tif.pages[0].is_geotiff:
        tif.close()
        raise NowcastError("is a TIFF image without GeoTIFF georeferencing (GeoKeys)", path)
    return tif


def _metadata(page) -> tuple[dict, float | None]:
    tags = page.tags
    items = gdal_items(str(tags[GDAL_METADATA_TAG].value)) if GDAL_METADATA_TAG in tags else {}
    nodata = None
    if GDAL_NODATA_TAG in tags:
        try:
            nodata = float(str(tags[GDAL_NODATA_TAG].value).strip("\x00 "))
        except ValueError:
            pass
    return items, nodata


def read_geotiff(path: Path) -> RadarFrame:
    with _open(path) as tif:
        page = tif.pages[0]  # the full-resolution image; later pages are overviews
        items, nodata_tag = _metadata(page)
        try:
            raw = page.asarray()
        except Exception as exc:  # a truncated strip or tile shows only when decoded
            raise NowcastError(f"is a GeoTIFF whose pixels cannot be decoded ({exc}); it may be truncated",
                               path) from None
        projection, x, y = _grid(page, path)
    if raw.ndim != 2:
        raise NowcastError(f"is a GeoTIFF with {raw.shape} pixels; nowcast reads one band", path)
    units = _units(items)
    values = _values(raw, items, nodata_tag, units)
    quantity = items.get("quantity", ("", {}))[0]
    frame = RadarFrame(values, units, _time(items, path), projection, x, y,
                       source=f"GeoTIFF {quantity}".strip(), quantity=quantity)
    if units is None and _item_number(items, "gain", "scale") is None and np.issubdtype(raw.dtype, np.integer):
        frame.stored_dtype = raw.dtype  # undeclared integer pixels: the 8-bit rule may apply
    return frame


def read_geotiff_time(path: Path) -> np.datetime64:
    with _open(path) as tif:
        return _time(_metadata(tif.pages[0])[0], path)
