"""Radar formats besides netCDF (nowcast.formats): files written here in each format, read back against the
values known by construction (gain/offset, undetect = no echo, nodata = NaN, the time in the metadata, the
grid); format detection by content; the CLI on per-frame files; damaged files give one line and exit 2.

A slow test compares the arrays read from the pysteps example data with pysteps' own importers; it runs when
NOWCAST_PYSTEPS_DATA names a folder holding the pysteps-data repository's `radar/` tree, and skips otherwise.
"""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from PIL import Image
from pyproj import Proj

from nowcast import formats
from nowcast.errors import NowcastError
from nowcast.geo import latlon
from nowcast.radar import open_radar

T0 = np.datetime64("2021-07-04T15:50", "ns")
STEP = np.timedelta64(5, "m")
LAEA = "+proj=laea +lat_0=55 +lon_0=10 +x_0=1950000 +y_0=-2100000 +units=m +ellps=WGS84"


def moving_cell(n, h, w, peak=50.0):
    """n frames of a round cell moving one pixel east per frame, in dBZ over a 0 dBZ background."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.array([peak * np.exp(-((xx - 10 - k) ** 2 + (yy - h / 2) ** 2) / 30.0) for k in range(n)])


def stamp(t) -> str:
    return str(np.datetime64(t, "s")).replace("-", "").replace(":", "").replace("T", "")


# ----------------------------------------------------------------------------------- writers


def write_odim(path, raw, time, quantity="DBZH", gain=0.5, offset=-32.0, nodata=255, undetect=0,
               projected_corner=False, start=None, ul=(1000000.0, 200000.0), scale=2000.0):
    """An ODIM_H5 2.2 composite with the attributes at the dataset level (OPERA's layout)."""
    ny, nx = raw.shape
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = np.bytes_("ODIM_H5/V2_2")
        what = f.create_group("what")
        what.attrs.update({"date": np.bytes_(stamp(time)[:8]), "time": np.bytes_(stamp(time)[8:]),
                           "object": np.bytes_("COMP")})
        where = f.create_group("where")
        where.attrs.update({"projdef": np.bytes_(LAEA), "xsize": nx, "ysize": ny, "xscale": scale, "yscale": scale})
        proj = Proj(LAEA)
        x0, y0 = ul
        corners = {"UL": (x0, y0), "UR": (x0 + nx * scale, y0), "LL": (x0, y0 - ny * scale),
                   "LR": (x0 + nx * scale, y0 - ny * scale)}
        for name, (x, y) in corners.items():
            lon, lat = proj(x, y, inverse=True)
            where.attrs[f"{name}_lon"], where.attrs[f"{name}_lat"] = lon, lat
        ds = f.create_group("dataset1")
        dwhat = ds.create_group("what")
        dwhat.attrs.update({"quantity": np.bytes_(quantity), "gain": gain, "offset": offset,
                            "nodata": float(nodata), "undetect": float(undetect), "product": np.bytes_("COMP")})
        start = start if start is not None else time - STEP
        dwhat.attrs.update({"startdate": np.bytes_(stamp(start)[:8]), "starttime": np.bytes_(stamp(start)[8:]),
                            "enddate": np.bytes_(stamp(time)[:8]), "endtime": np.bytes_(stamp(time)[8:])})
        if projected_corner:  # RMI writes the projected upper-left corner in dataset1/where
            ds.create_group("where").attrs.update({"UL_x": x0, "UL_y": y0, "xscale": scale, "yscale": scale})
        ds.create_group("data1").create_dataset("data", data=raw)
    return path


def write_knmi(path, raw, time):
    """A RAD_NL25-like KNMI file: accumulations in 0.01 mm, 65535 = no data, km grid, 5-minute period."""
    ny, nx = raw.shape
    with h5py.File(path, "w") as f:
        image = f.create_group("image1")
        image.create_dataset("image_data", data=raw.astype(np.uint16))
        image.attrs["image_geo_parameter"] = np.bytes_("ACCUMULATED_PRECIPITATION_[MM]")
        image.attrs["image_product_name"] = np.bytes_("RAD_NL25_RAC_5min")
        image.create_group("calibration").attrs.update({
            "calibration_formulas": np.bytes_("GEO=0.01*PV+0.0"),
            "calibration_missing_data": np.array([65535], np.int32),
            "calibration_out_of_image": np.array([65535], np.int32)})
        geo = f.create_group("geographic")
        geo.attrs.update({"geo_column_offset": np.array([0.0], np.float32),
                          "geo_row_offset": np.array([3650.0], np.float32),
                          "geo_pixel_size_x": np.array([1.0], np.float32),
                          "geo_pixel_size_y": np.array([-1.0], np.float32),
                          "geo_number_columns": np.array([nx], np.int32), "geo_number_rows": np.array([ny], np.int32),
                          "geo_dim_pixel": np.bytes_("KM,KM")})
        geo.create_group("map_projection").attrs["projection_proj4_params"] = np.bytes_(
            "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0")
        overview = f.create_group("overview")
        overview.attrs["product_datetime_start"] = np.array([_knmi_time(time - STEP)])
        overview.attrs["product_datetime_end"] = np.array([_knmi_time(time)])
    return path


def _knmi_time(t) -> bytes:
    """KNMI's time format: 26-AUG-2010;00:05:00.000"""
    from datetime import datetime

    d = datetime.fromisoformat(str(np.datetime64(t, "s")))
    return d.strftime("%d-%b-%Y;%H:%M:%S.000").upper().encode()


def write_pgm(path, raw, time, gz=False):
    """An FMI-style PGM: metadata in comments, 255 = no data, dBZ = pixel / 2 - 32."""
    ny, nx = raw.shape
    header = (f"P5\n# obstime {stamp(time)[:12]}\n# param CorrectedReflectivity\n"
              f"# metersperpixel_x 1000.0\n# metersperpixel_y 1000.0\n# projection radar {{\n"
              f"# type stereographic\n# centrallongitude 25\n# centrallatitude 90\n# truelatitude 60\n"
              f"# bottomleft 18.6 57.93\n# topright 34.9 69.0\n# }}\n{nx} {ny}\n255\n").encode()
    data = header + raw.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_geotiff(path, raw, time, gdal_metadata=True, epsg=3067, tie=(300000.0, 7000000.0), scale=1000.0):
    """A GeoTIFF with FMI's GDAL metadata (gain 0.5, offset -32, nodata 255, undetect 0, observation time)."""
    import tifffile

    geokeys = [1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg, 3076, 0, 1, 9001]
    tags = [(33550, "d", 3, (scale, scale, 0.0), True), (33922, "d", 6, (0, 0, 0, tie[0], tie[1], 0), True),
            (34735, "H", len(geokeys), geokeys, True)]
    if gdal_metadata:
        meta = ('<GDALMetadata>\n<Item name="Observation time" format="YYYYMMDDhhmm">'
                f'{stamp(time)[:12]}</Item>\n<Item name="Quantity" unit="dBZ">Corrected reflectivity</Item>\n'
                '<Item name="Gain">0.500000</Item>\n<Item name="Offset">-32.000000</Item>\n'
                '<Item name="Nodata">255</Item>\n<Item name="Undetect">0</Item>\n</GDALMetadata>\n')
        tags.append((42112, "s", 0, meta, True))
    tifffile.imwrite(path, raw.astype(np.uint8), extratags=tags)
    return path


def write_mch_gif(path, indices, time, product="AQC"):
    """A MeteoSwiss-like GIF: a 710 x 640 palette image with the product comment."""
    from datetime import datetime

    d = datetime.fromisoformat(str(np.datetime64(time, "s")))
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    comment = f"generated by Meteoswiss\nPRDT={product}{d.strftime('%y%j%H%M')} ACCUm=000005 DeltaT=000005\n"
    image.save(path, format="GIF", comment=comment.encode(), optimize=False)
    return path


# ----------------------------------------------------------------------------------- values by construction


def test_odim_dbzh_gain_offset_undetect_nodata_time(tmp_path):
    raw = np.full((20, 30), 100, np.uint8)  # 100 * 0.5 - 32 = 18 dBZ
    raw[0, 0], raw[1, 1], raw[2, 2] = 0, 255, 180  # undetect, nodata, 58 dBZ
    path = write_odim(tmp_path / "radar.h5", raw, T0)
    assert formats.detect_format(path) == "odim"
    frame = formats.read_frame(path, "odim")
    assert frame.units == "dBZ" and frame.time == T0
    assert frame.values[5, 5] == 18.0 and frame.values[2, 2] == 58.0
    assert frame.values[0, 0] < -10 and np.isnan(frame.values[1, 1])
    # the grid: pixel centres from the projected corners (lon/lat in the file, so to a millimetre)
    np.testing.assert_allclose(frame.x[:2], [1001000.0, 1003000.0], atol=1e-3)
    np.testing.assert_allclose(frame.y[:2], [199000.0, 197000.0], atol=1e-3)
    seq = open_radar(path)
    assert seq.dims == ("time", "y", "x") and seq.dtype == np.float32
    assert seq.values[0, 0, 0] == -10.0 and np.isnan(seq.values[0, 1, 1]) and seq.values[0, 5, 5] == 18.0
    assert seq.attrs["input_kind"] == "dbz" and seq["time"].values[0] == T0


def test_odim_rate_with_projected_corner_and_accumulation(tmp_path):
    rate = np.array([[0.0, 1.0], [np.nan, 10.0]], np.float32)
    path = write_odim(tmp_path / "rmi.hdf", rate, T0, quantity="RATE", gain=1.0, offset=0.0, nodata=-1, undetect=0,
                      projected_corner=True)
    frame = formats.read_frame(path, "odim")
    assert frame.units == "mm/h" and frame.values[1, 1] == 10.0 and frame.values[0, 0] == 0.0
    assert frame.x[0] == 1001000.0 and frame.y[0] == 199000.0
    seq = open_radar(path)
    assert seq.attrs["input_kind"] == "rate"
    np.testing.assert_allclose(seq.values[0, 1, 1], 10 * np.log10(200 * 10 ** 1.6), atol=1e-4)
    raw = np.array([[0, 100], [255, 50]], np.uint8)  # 0.1 mm steps over 15 minutes
    acrr = write_odim(tmp_path / "acrr.h5", raw, T0, quantity="ACRR", gain=0.1, offset=0.0,
                      start=T0 - np.timedelta64(15, "m"))
    seq = open_radar(acrr)
    assert seq.attrs["input_kind"] == "accumulation" and "15 min" in seq.attrs["conversion"]
    np.testing.assert_allclose(seq.values[0, 0, 1], 10 * np.log10(200 * 40.0 ** 1.6), atol=1e-4)  # 10 mm/15 min
    assert np.isnan(seq.values[0, 1, 0]) and seq.values[0, 0, 0] == -10.0


def test_odim_without_a_known_quantity(tmp_path):
    path = write_odim(tmp_path / "q.h5", np.zeros((4, 4), np.uint8), T0, quantity="QIND")
    with pytest.raises(NowcastError, match="none of the quantities.*it has: QIND"):
        open_radar(path)


def test_knmi_accumulation_calibration_and_time(tmp_path):
    raw = np.zeros((30, 20), np.uint16)
    raw[3, 4], raw[5, 6] = 250, 65535  # 2.5 mm in 5 minutes; no data
    path = write_knmi(tmp_path / "RAD_NL25.h5", raw, T0)
    assert formats.detect_format(path) == "knmi"
    frame = formats.read_frame(path, "knmi")
    assert frame.units == "mm" and frame.time == T0 and frame.start_time == T0 - STEP
    assert frame.values[3, 4] == pytest.approx(2.5) and np.isnan(frame.values[5, 6])
    np.testing.assert_allclose(frame.x[:2], [500.0, 1500.0])
    np.testing.assert_allclose(frame.y[:2], [-3650500.0, -3651500.0])
    seq = open_radar(path)
    assert seq.attrs["input_kind"] == "accumulation" and "5 min" in seq.attrs["conversion"]
    np.testing.assert_allclose(seq.values[0, 3, 4], 10 * np.log10(200 * 30.0 ** 1.6), atol=1e-4)
    lat, lon = latlon(seq)
    assert 53 < lat[0, 0] < 56 and 0 < lon[0, 0] < 4  # the north-west corner of the Netherlands' grid


@pytest.mark.parametrize("gz", [False, True])
def test_fmi_pgm(tmp_path, gz):
    raw = np.full((12, 10), 84, np.uint8)  # 84 / 2 - 32 = 10 dBZ
    raw[0, 0], raw[1, 1] = 0, 255
    path = write_pgm(tmp_path / ("f.pgm.gz" if gz else "f.pgm"), raw, T0, gz=gz)
    assert formats.detect_format(path) == "pgm"
    frame = formats.read_frame(path, "pgm")
    assert frame.units == "dBZ" and frame.time == T0 and frame.values[4, 4] == 10.0
    assert frame.values[0, 0] < -10 and np.isnan(frame.values[1, 1])
    assert frame.x[1] - frame.x[0] == pytest.approx(1000.0) and frame.y[0] > frame.y[1]
    lat, lon = latlon(open_radar(path))
    assert lat[-1, 0] == pytest.approx(57.93, abs=0.01) and lon[-1, 0] == pytest.approx(18.6, abs=0.02)


def test_geotiff_fmi_metadata(tmp_path):
    raw = np.full((8, 9), 84, np.uint8)
    raw[0, 0], raw[1, 1] = 0, 255
    path = write_geotiff(tmp_path / "any_name.bin", raw, T0)
    assert formats.detect_format(path) == "geotiff"
    frame = formats.read_frame(path, "geotiff")
    assert frame.units == "dBZ" and frame.time == T0 and frame.projection == "EPSG:3067"
    assert frame.values[3, 3] == 10.0 and frame.values[0, 0] < -10 and np.isnan(frame.values[1, 1])
    np.testing.assert_allclose(frame.x[:2], [300500.0, 301500.0])
    np.testing.assert_allclose(frame.y[:2], [6999500.0, 6998500.0])
    lat, lon = latlon(open_radar(path))
    assert 60 < lat.mean() < 71 and 19 < lon.mean() < 32  # Finland


def test_generic_geotiff_pixels_and_time_from_name(tmp_path):
    raw = np.arange(72, dtype=np.uint8).reshape(8, 9)
    path = write_geotiff(tmp_path / "radar_202107041550.tif", raw, T0, gdal_metadata=False)
    with pytest.warns(UserWarning, match="8-bit pixels"):  # no units: integer pixels, the 8-bit rule, said
        seq = open_radar(path)
    assert seq.attrs["input_kind"] == "pixels" and seq["time"].values[0] == T0
    np.testing.assert_allclose(seq.values[0, 7, 8], max(71 * 95 / 255 - 10, -10), atol=1e-5)
    (tmp_path / "radar.tif").write_bytes(path.read_bytes())
    with pytest.raises(NowcastError, match="radar.tif.*no time"):
        open_radar(tmp_path / "radar.tif")


def test_mch_gif_legend_time_and_grid(tmp_path):
    indices = np.zeros((640, 710), np.uint8)
    indices[100, 200], indices[101, 200], indices[102, 200] = 91, 255, 252  # an amount, no data, no echo
    path = write_mch_gif(tmp_path / "frame.gif", indices, T0)
    assert formats.detect_format(path) == "mch-gif"
    frame = formats.read_frame(path, "mch-gif")
    expected = (10 ** ((91 - 71.5) / 20) / 316) ** (1 / 1.5)
    assert frame.units == "mm" and frame.time == T0 and frame.start_time == T0 - STEP
    assert frame.values[100, 200] == pytest.approx(expected, rel=1e-6)
    assert np.isnan(frame.values[101, 200]) and frame.values[102, 200] == 0 and frame.values[0, 0] == 0
    assert frame.x[0] == 255500.0 and frame.y[0] == 479500.0
    lat, lon = latlon(open_radar(path))
    assert 45.5 < lat[320, 355] < 48 and 5.5 < lon[320, 355] < 10.5  # Switzerland


# ----------------------------------------------------------------------------------- detection and errors


def test_format_detected_by_content_not_name(tmp_path):
    raw = np.full((6, 6), 100, np.uint8)
    odim = write_odim(tmp_path / "looks_like.tif", raw, T0)
    pgm = write_pgm(tmp_path / "looks_like.h5", raw, T0, gz=True)
    assert formats.detect_format(odim) == "odim" and formats.detect_format(pgm) == "pgm"
    (tmp_path / "image.gif").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(NowcastError, match="image.gif.*looks like a PNG image"):
        open_radar(tmp_path / "image.gif")
    with pytest.raises(NowcastError, match="^format 'grib' is not a format"):
        open_radar(odim, format="grib")


def test_format_option_overrides_detection(tmp_path):
    path = write_odim(tmp_path / "radar.h5", np.full((6, 6), 100, np.uint8), T0)
    with pytest.raises(NowcastError, match="radar.h5.*KNMI HDF5"):
        open_radar(path, format="knmi")
    assert open_radar(path, format="ODIM").sizes["x"] == 6


def damaged_files(tmp_path) -> list[Path]:
    """One truncated file of each format, and a GIF that is not MeteoSwiss's."""
    raw = np.full((60, 50), 100, np.uint8)
    good = [write_odim(tmp_path / "g.h5", raw, T0), write_knmi(tmp_path / "g_knmi.h5", raw, T0),
            write_pgm(tmp_path / "g.pgm.gz", raw, T0, gz=True), write_pgm(tmp_path / "g.pgm", raw, T0),
            write_geotiff(tmp_path / "g.tif", raw, T0), write_mch_gif(tmp_path / "g.gif", np.zeros((640, 710)), T0)]
    bad = []
    for path in good:
        data = path.read_bytes()
        cut = tmp_path / f"cut_{path.name}"
        cut.write_bytes(data[: len(data) // 2])
        bad.append(cut)
    Image.new("P", (20, 10)).save(tmp_path / "plain.gif")
    return bad + [tmp_path / "plain.gif"]


def test_damaged_files_give_one_line(tmp_path):
    for path in damaged_files(tmp_path):
        with pytest.raises(NowcastError) as info:
            open_radar(path).values
        message = str(info.value)
        assert path.name in message and "\n" not in message, message


# ----------------------------------------------------------------------------------- the CLI


def run_cli(args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="300", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nowcast", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def per_frame_files(tmp_path, kind, n=6):
    """n per-frame files of a cell moving east, in the format `kind`, 5 minutes apart."""
    dbz = moving_cell(n, 48, 56)
    paths = []
    for k in range(n):
        t = T0 + k * STEP
        pixels = np.clip(np.round((dbz[k] + 32) * 2), 1, 254).astype(np.uint8)  # FMI and ODIM coding
        if kind == "odim":
            paths.append(write_odim(tmp_path / f"odim_{k}.h5", pixels, t))
        elif kind == "pgm":
            paths.append(write_pgm(tmp_path / f"fmi_{k}.pgm.gz", pixels, t, gz=True))
        elif kind == "geotiff":
            paths.append(write_geotiff(tmp_path / f"fmi_{k}.tif", pixels, t))
        elif kind == "knmi":
            mm = (10 ** (dbz[k] / 10) / 200) ** (1 / 1.6) / 12  # 5-minute accumulation
            paths.append(write_knmi(tmp_path / f"knmi_{k}.h5", np.round(mm * 100), t))
    return paths


@pytest.mark.parametrize("kind", ["odim", "knmi", "pgm", "geotiff"])
def test_predict_on_per_frame_files(tmp_path, kind):
    per_frame_files(tmp_path, kind)
    pattern = {"odim": "odim_*.h5", "knmi": "knmi_*.h5", "pgm": "fmi_*.pgm.gz", "geotiff": "fmi_*.tif"}[kind]
    result = run_cli(["predict", pattern, "--method", "extrapolation", "-o", "f.nc"], tmp_path)
    assert result.returncode == 0, result.stderr
    with xr.open_dataset(tmp_path / "f.nc") as ds:
        assert ds.sizes["time"] == 10
        assert (np.diff(ds["time"].values) == STEP).all()
        assert ds["time"].values[0] == T0 + 6 * STEP
        assert "lat" in ds and "crs" in ds


def test_predict_lazy_reads_the_same(tmp_path):
    paths = per_frame_files(tmp_path, "pgm")
    eager = open_radar(paths, lazy=False)
    lazy = open_radar(paths, lazy=True, index_cache=False)
    np.testing.assert_array_equal(eager.values, lazy.values)
    np.testing.assert_array_equal(eager["time"].values, lazy["time"].values)
    assert eager.attrs["conversion"] == lazy.attrs["conversion"]


def test_cli_bad_files_one_line_exit_2_nothing_written(tmp_path, capfd, monkeypatch):
    from nowcast.cli import main

    monkeypatch.chdir(tmp_path)
    for path in damaged_files(tmp_path):
        capfd.readouterr()
        code = main(["predict", str(path), "--method", "extrapolation", "-o", "f.nc"])
        err = capfd.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, err
        assert len(lines) == 1 and path.name in lines[0] and "Traceback" not in err, err
        assert not (tmp_path / "f.nc").exists()


# ----------------------------------------------------------------------------------- against pysteps


PYSTEPS_DATA = os.environ.get("NOWCAST_PYSTEPS_DATA")
# (folder glob under radar/, our format, pysteps importer name, its keyword arguments)
PYSTEPS_CASES = [
    ("KNMI/2010/08/*.h5", "knmi", "knmi_hdf5", {"qty": "ACRR", "accutime": 5.0}),
    ("OPERA/20180824/*.hdf", "odim", "opera_hdf5", {"qty": "RATE"}),
    ("rmi/radqpe/*/*.hdf", "odim", "odim_hdf5", {"qty": "RATE"}),
    ("fmi/pgm/*/*.pgm.gz", "pgm", "fmi_pgm", {"gzipped": True}),
    ("mch/*/AQC*.gif", "mch-gif", "mch_gif", {"product": "AQC", "unit": "mm", "accutime": 5.0}),
]


@pytest.mark.slow
@pytest.mark.skipif(not PYSTEPS_DATA, reason="NOWCAST_PYSTEPS_DATA does not name a folder with the pysteps "
                                             "example data (its radar/ tree)")
@pytest.mark.parametrize("pattern,fmt,importer,kwargs", PYSTEPS_CASES, ids=[c[1] + ":" + c[2] for c in PYSTEPS_CASES])
def test_same_arrays_as_pysteps(pattern, fmt, importer, kwargs):
    from pysteps.io import get_method

    files = sorted(Path(PYSTEPS_DATA, "radar").glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} under {PYSTEPS_DATA}/radar")
    for path in files[:: max(1, len(files) // 3)]:
        assert formats.detect_format(path) == fmt
        ours = formats.read_frame(path, fmt).values
        theirs = get_method(importer, "importer")(str(path), **kwargs)[0]
        theirs = np.asarray(getattr(theirs, "filled", lambda v: theirs)(np.nan), dtype=np.float64)
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=str(path))
        # pysteps writes undetect as its own zero value (-30 dBZ or 0 mm); nowcast as no echo: both below the floor
        valid = ~np.isnan(ours) & (theirs > (-10 if fmt == "pgm" else 0))
        np.testing.assert_allclose(ours[valid], theirs[valid], rtol=1e-5, atol=1e-5, err_msg=str(path))
