"""Latitude/longitude from the grid mapping, graticule levels, and map lines only from local data."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from nowcast import geo
from nowcast.radar import open_radar
from radar_files import SHARED_RADAR, needs_shared_radar, storm, write_nc

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
needs_shared = needs_shared_radar()


def _corners(a):
    return np.array([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]])


def _reference_corners(path):
    """Corner lat/lon computed straight from the file's proj4 string, without nowcast."""
    with xr.open_dataset(path) as ds:
        proj4 = ds["crs"].attrs["proj4"]
        x, y = ds["x"].values, ds["y"].values
    to_wgs84 = Transformer.from_crs(proj4, "EPSG:4326", always_xy=True)
    xs = np.array([x[0], x[-1], x[0], x[-1]])
    ys = np.array([y[0], y[0], y[-1], y[-1]])
    lon, lat = to_wgs84.transform(xs, ys)
    return np.asarray(lat), np.asarray(lon)


@needs_shared
def test_fmi_corners_match_proj4_and_the_pgm_header():
    path = SHARED_RADAR / "fmi_dbz.nc"
    da = open_radar(path).isel(time=slice(-2, None))
    lat, lon = geo.latlon(da)
    assert lat.shape == lon.shape == (1226, 760)
    ref_lat, ref_lon = _reference_corners(path)
    assert np.allclose(_corners(lat), ref_lat, atol=1e-6) and np.allclose(_corners(lon), ref_lon, atol=1e-6)
    # FMI's PGM header gives the outer corners: bottom-left 57.93N 18.6E, top-right 69.005N 34.903E.
    # Pixel centres lie half a pixel (500 m) inside: about 0.005 deg of latitude, 0.013 deg of longitude at 69N.
    assert lat[-1, 0] == pytest.approx(57.93, abs=0.01) and lon[-1, 0] == pytest.approx(18.6, abs=0.015)
    assert lat[0, -1] == pytest.approx(69.005, abs=0.01) and lon[0, -1] == pytest.approx(34.903, abs=0.02)
    assert lat[0, 0] > lat[-1, 0]  # row 0 is north
    # a single frame (as plots get it) keeps the grid mapping
    frame_lat, _ = geo.latlon(da.isel(time=0))
    assert np.array_equal(frame_lat, lat)


@needs_shared
def test_meteoswiss_corners_and_bern_in_wgs84():
    path = SHARED_RADAR / "mch_rainrate_1.nc"
    da = open_radar(path).isel(time=slice(-1, None))
    lat, lon = geo.latlon(da)
    ref_lat, ref_lon = _reference_corners(path)
    assert np.allclose(_corners(lat), ref_lat, atol=1e-6) and np.allclose(_corners(lon), ref_lon, atol=1e-6)
    # The Swiss grid's origin (600 km, 200 km) is the old Bern observatory, 46.95108N 7.43864E in WGS 84
    # (46.95241N 7.43958E on the Bessel ellipsoid: the datum shift of ~150 m must be applied).
    cols = np.nonzero(np.isin(da["x"].values, [599500.0, 600500.0]))[0]
    rows = np.nonzero(np.isin(da["y"].values, [199500.0, 200500.0]))[0]
    assert len(cols) == len(rows) == 2
    assert lat[np.ix_(rows, cols)].mean() == pytest.approx(46.95108, abs=2e-4)
    assert lon[np.ix_(rows, cols)].mean() == pytest.approx(7.43864, abs=2e-4)


@needs_shared
def test_bom_coordinates_in_km_centre_on_the_projection_origin():
    path = SHARED_RADAR / "bom_prcp-c10" / "66_20201031_000000.prcp-c10.nc"
    da = open_radar(path)
    assert da["x"].attrs["units"] == "km"
    assert geo.grid_spacing_m(da) == pytest.approx(500.0)
    lat, lon = geo.latlon(da)
    # x = y = 0 lies between the four central pixels: the Albers origin, 27.7178S 153.24E
    assert lat[255:257, 255:257].mean() == pytest.approx(-27.7178, abs=1e-3)
    assert lon[255:257, 255:257].mean() == pytest.approx(153.24, abs=1e-3)
    assert lat[0, 0] > lat[-1, 0]  # 256 x 500 m = 128 km north of the origin: about 1.15 degrees
    assert lat[0, 256] - lat[255:257, 255:257].mean() == pytest.approx(127.75 / 111.0, abs=0.02)


def test_synthetic_sample_is_placed_at_its_azimuthal_origin():
    da = open_radar(SAMPLE)
    lat, lon = geo.latlon(da)
    assert lat.shape == (128, 128)
    # origin 50N 10E between the central pixels; the top row is 63.5 km north: 63.5 / 111.2 deg
    assert lat[63:65, 63:65].mean() == pytest.approx(50.0, abs=1e-3)
    assert lon[63:65, 63:65].mean() == pytest.approx(10.0, abs=1e-3)
    assert lat[0, 64] == pytest.approx(50.0 + 63.5 / 111.2, abs=0.01)


def test_latlon_coords_are_cf_coordinates(tmp_path):
    da = open_radar(write_nc(tmp_path / "cf.nc", storm(n=2, h=6, w=5)))
    coords = geo.latlon_coords(da)
    lat, lon = geo.latlon(da)
    assert np.array_equal(coords["lat"].values, lat) and np.array_equal(coords["lon"].values, lon)
    assert coords["lat"].dims == ("y", "x") and coords["lon"].attrs["units"] == "degrees_east"
    assert coords["lat"].attrs["standard_name"] == "latitude"
    with_ll = da.assign_coords(coords)
    assert with_ll["lat"].shape == (6, 5) and with_ll.isel(time=0)["lon"].shape == (6, 5)
    assert geo.latlon_coords(open_radar(write_nc(tmp_path / "p.nc", storm(n=2, h=6, w=5), with_crs=False))) is None


def test_unknown_or_missing_grid_mapping_gives_none(tmp_path):
    values = storm(n=2, h=6, w=5)
    plain = open_radar(write_nc(tmp_path / "plain.nc", values, with_crs=False))
    assert geo.latlon(plain) is None
    odd = open_radar(write_nc(tmp_path / "odd.nc", values))
    odd = odd.assign_coords(crs=xr.DataArray(0, attrs={"grid_mapping_name": "no_such_projection",
                                                       "crs_wkt": "not a CRS"}))
    assert geo.latlon(odd) is None
    assert geo.latlon(np.zeros((3, 4))) is None  # a bare array has no geography
    pixels = odd.assign_coords(x=("x", np.arange(5.0), {"units": "pixels"}))
    assert geo.latlon(pixels) is None


def test_cf_attributes_alone_are_enough(tmp_path):
    # the hand-made test files carry only CF parameters (azimuthal equidistant at 60N 25E)
    da = open_radar(write_nc(tmp_path / "cf.nc", storm(n=2, h=6, w=5)))
    lat, lon = geo.latlon(da)
    assert lat.shape == (6, 5)
    assert lat[-1, 0] == pytest.approx(60.0, abs=1e-6) and lon[-1, 0] == pytest.approx(25.0, abs=1e-6)
    assert lat[0, 0] == pytest.approx(60.0 + 5.0 / 111.2, abs=0.002)  # y = 5 km on the top row


def test_latitude_longitude_grids_pass_through():
    da = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"),
                      coords={"y": ("y", [50.0, 49.0], {"units": "degrees_north"}),
                              "x": ("x", [5.0, 6.0, 7.0], {"units": "degrees_east"})})
    lat, lon = geo.latlon(da)
    assert np.array_equal(lat, [[50, 50, 50], [49, 49, 49]]) and np.array_equal(lon, [[5, 6, 7]] * 2)


def test_graticule_levels_are_round_and_inside():
    assert geo.nice_step(11.07) == 2.0 and geo.nice_step(0.5) == 0.1 and geo.nice_step(3.0) == 0.5
    lat = np.array([[57.93, 69.0]])
    lon = np.array([[15.06, 34.89]])
    lines = geo.graticule_lines(lat, lon)
    assert np.array_equal(lines["lat"], [58, 60, 62, 64, 66, 68])
    assert np.array_equal(lines["lon"], [20, 25, 30])
    assert geo.graticule_levels(np.array([60.0, 62.0])).tolist() == [60.5, 61.0, 61.5]  # ends excluded
    assert geo.graticule_levels(np.array([np.nan])).size == 0
    assert geo.format_degrees(-27.5, "lat") == "27.5\u00b0S" and geo.format_degrees(25, "lon") == "25\u00b0E"


def test_map_lines_never_download(monkeypatch, tmp_path):
    da = open_radar(write_nc(tmp_path / "cf.nc", storm(n=2, h=6, w=5)))
    monkeypatch.setitem(sys.modules, "cartopy", None)  # cartopy not installed
    assert geo.local_natural_earth_files() == [] and geo.map_lines(da) == []
    # cartopy installed, but its data never fetched: still nothing, and no download attempted
    fake = types.ModuleType("cartopy")
    fake.config = {"data_dir": str(tmp_path / "empty"), "pre_existing_data_dir": ""}
    monkeypatch.setitem(sys.modules, "cartopy", fake)
    assert geo.map_lines(da) == []


def test_map_lines_from_local_shapefiles_are_projected(monkeypatch, tmp_path):
    da = open_radar(write_nc(tmp_path / "cf.nc", storm(n=2, h=6, w=5)))
    coast = tmp_path / "ne" / "shapefiles" / "natural_earth" / "physical" / "ne_50m_coastline.shp"
    coast.parent.mkdir(parents=True)
    coast.write_bytes(b"")

    class Line:  # the part of a shapely LineString that map_lines reads
        def __init__(self, lon, lat):
            self.coords = types.SimpleNamespace(xy=(lon, lat))

    class Reader:
        def __init__(self, path):
            assert path == str(coast)

        def geometries(self):
            yield Line([25.0, 25.0], [60.0, 60.1])  # through the grid origin, northwards
            yield Line([-70.0, -69.0], [-40.0, -40.0])  # far away: dropped

    fake = types.ModuleType("cartopy")
    fake.config = {"data_dir": str(tmp_path / "ne")}
    fake_io = types.ModuleType("cartopy.io")
    fake_io.shapereader = types.SimpleNamespace(Reader=Reader)
    monkeypatch.setitem(sys.modules, "cartopy", fake)
    monkeypatch.setitem(sys.modules, "cartopy.io", fake_io)
    lines = geo.map_lines(da)
    assert len(lines) == 1
    assert np.allclose(lines[0][0], [0.0, 0.0], atol=1e-6)  # the origin in grid metres
    assert lines[0][1, 0] == pytest.approx(0.0, abs=1e-6) and lines[0][1, 1] == pytest.approx(11_120, rel=0.01)
