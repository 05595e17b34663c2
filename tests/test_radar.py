import warnings

import numpy as np
import pytest
import xarray as xr
from radar_files import SHARED_RADAR, needs_shared_radar, storm, times, write_nc

from nowcast.errors import NowcastError, NowcastWarning
from nowcast.radar import last_regular_frames, open_radar, parse_units, time_step


def test_dbz_file_keeps_values_coords_and_grid_mapping(tmp_path):
    v = storm()
    path = write_nc(tmp_path / "a.nc", v)
    da = open_radar(path)
    assert da.dims == ("time", "y", "x") and da.dtype == np.float32
    np.testing.assert_allclose(da.values, np.maximum(v, -10), atol=1e-6)
    assert da.attrs["units"] == "dBZ"
    assert da.attrs["grid_mapping"] == "crs"
    assert da["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    np.testing.assert_array_equal(da["x"].values, 1000.0 * np.arange(48))
    assert time_step(da) == np.timedelta64(5, "m")


def test_floor_and_nodata(tmp_path):
    v = np.full((3, 4, 4), -25.0, dtype=np.float32)
    v[:, 0, 0] = np.nan
    v[:, 1, 1] = 42.0
    da = open_radar(write_nc(tmp_path / "a.nc", v))
    assert np.isnan(da.values[:, 0, 0]).all()
    assert (da.values[:, 2:, 2:] == -10).all()
    assert (da.values[:, 1, 1] == 42).all()


@pytest.mark.parametrize("unit", ["mm/h", "mm h-1", "mm hr-1", "kg m-2 h-1", "mm h**-1", "MM/H"])
def test_rain_rate_units(tmp_path, unit):
    v = np.array([[[0.0, 1.0], [10.0, np.nan]]] * 2, dtype=np.float32)
    da = open_radar(write_nc(tmp_path / "r.nc", v, units=unit))
    np.testing.assert_allclose(da.values[0].ravel()[:3], [-10.0, 23.0103, 39.0103], atol=1e-4)
    assert np.isnan(da.values[0, 1, 1])
    assert "Marshall-Palmer" in da.attrs["conversion"]


def test_rate_per_second(tmp_path):
    v = np.full((2, 2, 2), 1 / 3600, dtype=np.float32)  # 1 mm/h expressed in kg m-2 s-1
    da = open_radar(write_nc(tmp_path / "r.nc", v, units="kg m-2 s-1"))
    np.testing.assert_allclose(da.values, 23.0103, atol=1e-3)


def test_accumulation_over_the_time_step(tmp_path):
    # 0.5 mm in 10 minutes = 3 mm/h -> 10 log10(200 * 3^1.6)
    v = np.full((3, 2, 2), 0.5, dtype=np.float32)
    da = open_radar(write_nc(tmp_path / "acc.nc", v, units="mm", time=times(3, step_min=10)))
    np.testing.assert_allclose(da.values, 10 * np.log10(200 * 3**1.6), atol=1e-4)
    assert "x6" in da.attrs["conversion"]


def test_custom_zr_relation(tmp_path):
    v = np.full((2, 2, 2), 2.0, dtype=np.float32)
    da = open_radar(write_nc(tmp_path / "r.nc", v, units="mm/h"), zr_a=300, zr_b=1.4)
    np.testing.assert_allclose(da.values, 10 * np.log10(300 * 2**1.4), atol=1e-4)


def test_8bit_pixels_default_rule_is_announced(tmp_path):
    v = np.array([[[0, 255], [51, 102]]] * 2, dtype=np.uint8)
    path = write_nc(tmp_path / "p.nc", v, units=None)
    da = open_radar(path)
    np.testing.assert_allclose(da.values[0].ravel(), [-10, 85, 51 * 95 / 255 - 10, 102 * 95 / 255 - 10], atol=1e-4)
    assert "95/255" in da.attrs["conversion"] or "0.372549" in da.attrs["conversion"]
    da2 = open_radar(path, scale=0.5, offset=-32)
    # 0 -> -32 (floored to -10), 255 -> 95.5, 51 -> -6.5, 102 -> 19
    np.testing.assert_allclose(da2.values[0].ravel(), [-10, 95.5, -6.5, 19], atol=1e-4)


def test_units_override_and_unknown_units(tmp_path):
    v = np.full((2, 2, 2), 1.0, dtype=np.float32)
    path = write_nc(tmp_path / "u.nc", v, units="furlongs")
    with pytest.raises(NowcastError, match=r"u\.nc.*furlongs.*declare them with units"):
        open_radar(path)
    da = open_radar(path, units="mm/h")
    np.testing.assert_allclose(da.values, 23.0103, atol=1e-4)
    with pytest.raises(NowcastError, match="declare them with units"):
        open_radar(write_nc(tmp_path / "nounits.nc", v, units=None))


def test_parse_units_table():
    assert parse_units("dBZ").kind == "dbz"
    assert parse_units("kg m-2").kind == "accumulation"
    assert parse_units("mm s-1").factor == 3600
    assert parse_units("m/s") is None


def test_variable_choice(tmp_path):
    v = storm(n=3)
    extra = {"quality": (("time", "y", "x"), np.ones_like(v), {"units": "1"})}
    path = write_nc(tmp_path / "two.nc", v, extra_vars=extra)
    with pytest.raises(NowcastError, match="reflectivity, quality|quality, reflectivity"):
        open_radar(path)
    assert open_radar(path, variable="reflectivity").shape == v.shape
    with pytest.raises(NowcastError, match="no variable 'nope'"):
        open_radar(path, variable="nope")


def test_several_files_sorted_and_duplicates_dropped(tmp_path):
    v = storm(n=6)
    t = times(6)
    a = write_nc(tmp_path / "a.nc", v[3:], time=t[3:])
    b = write_nc(tmp_path / "b.nc", v[:4], time=t[:4])  # overlaps a at t[3]
    with pytest.warns(NowcastWarning, match="duplicate"):
        da = open_radar([a, b])
    np.testing.assert_array_equal(da["time"].values, t)
    np.testing.assert_allclose(da.values, np.maximum(v, -10), atol=1e-6)


def test_glob_of_per_frame_files_with_scalar_time(tmp_path):
    v = storm(n=4)
    for k in range(4):
        ds = xr.Dataset({"precip": (("y", "x"), np.full(v.shape[1:], 0.5, np.float32), {"units": "kg m-2"}),
                         "valid_time": ((), times(4, step_min=10)[k])})
        ds.to_netcdf(tmp_path / f"frame_{k:02d}.nc")
    da = open_radar(str(tmp_path / "frame_*.nc"))
    assert da.shape == (4,) + v.shape[1:]
    assert time_step(da) == np.timedelta64(10, "m")
    np.testing.assert_allclose(da.values, 10 * np.log10(200 * 3**1.6), atol=1e-4)


def test_times_not_increasing(tmp_path):
    t = times(4)[[0, 2, 1, 3]]
    with pytest.raises(NowcastError, match="not increasing"):
        open_radar(write_nc(tmp_path / "t.nc", storm(n=4), time=t))


def test_irregular_steps_error(tmp_path):
    t = np.datetime64("2026-06-01T12:00") + np.array([0, 5, 10, 17, 22], dtype="timedelta64[m]")
    with pytest.raises(NowcastError, match="irregular time steps: 7 min"):
        open_radar(write_nc(tmp_path / "t.nc", storm(n=5), time=t))


def test_gap_is_kept_with_a_warning_and_predict_refuses_it(tmp_path):
    t = times(8)[[0, 1, 2, 3, 5, 6, 7]]  # one frame missing
    path = write_nc(tmp_path / "g.nc", storm(n=7), time=t)
    with pytest.warns(NowcastWarning, match="1 missing frame"):
        da = open_radar(path)
    assert time_step(da) == np.timedelta64(5, "m")
    assert last_regular_frames(da, 3).sizes["time"] == 3
    with pytest.raises(NowcastError, match="not evenly spaced"):
        last_regular_frames(da, 5)


def test_extra_dimension_needs_a_choice(tmp_path):
    v = np.stack([storm(n=3), storm(n=3) + 5])  # (elevation, time, y, x)
    v = np.moveaxis(v, 0, 1)
    path = write_nc(tmp_path / "vol.nc", v, dims=("time", "elevation", "y", "x"))
    with pytest.raises(NowcastError, match="extra dimension 'elevation'.*select elevation=INDEX.*reduce max"):
        open_radar(path)
    lo = open_radar(path, select={"elevation": 0})
    hi = open_radar(path, reduce="max")
    assert lo.shape == hi.shape == (3, 40, 48)
    assert float(np.nanmax(hi.values - lo.values)) == pytest.approx(5, abs=1e-4)


def test_negative_rain_rates(tmp_path):
    v = np.full((2, 3, 3), 1.0, dtype=np.float32)
    v[0, 0, 0] = -0.1
    with pytest.warns(NowcastWarning, match="negative"):
        da = open_radar(write_nc(tmp_path / "n.nc", v, units="mm/h"))
    assert da.values[0, 0, 0] == -10
    v[0, 0, 0] = -50
    with pytest.raises(NowcastError, match="negative rain rates"):
        open_radar(write_nc(tmp_path / "n2.nc", v, units="mm/h"))


def test_unphysical_values_and_all_nan(tmp_path):
    v = storm(n=3)
    v[1, 2, 2] = 1e6
    with pytest.raises(NowcastError, match="physical range"):
        open_radar(write_nc(tmp_path / "big.nc", v))
    with pytest.raises(NowcastError, match="all values are no-data"):
        open_radar(write_nc(tmp_path / "nan.nc", np.full((3, 4, 4), np.nan, np.float32)))


def test_bad_files(tmp_path):
    with pytest.raises(NowcastError, match="file not found"):
        open_radar(tmp_path / "missing.nc")
    (tmp_path / "empty.nc").write_bytes(b"")
    with pytest.raises(NowcastError, match="empty"):
        open_radar(tmp_path / "empty.nc")
    (tmp_path / "text.nc").write_text("hello, I am not netCDF\n")
    with pytest.raises(NowcastError, match="not a netCDF file"):
        open_radar(tmp_path / "text.nc")
    good = write_nc(tmp_path / "good.nc", storm(n=20, h=64, w=64))
    (tmp_path / "trunc.nc").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(NowcastError, match="trunc.nc"):
        open_radar(tmp_path / "trunc.nc").values
    with pytest.raises(NowcastError, match="no file matches"):
        open_radar(str(tmp_path / "nothing_*.nc"))


def test_no_time_dimension(tmp_path):
    path = write_nc(tmp_path / "nt.nc", storm(n=1)[0], dims=("y", "x"))
    with pytest.raises(NowcastError, match="no time dimension"):
        open_radar(path)


# --- the team's radar archive (pysteps example data as CF netCDF; README figures) ---------------

SHARED = [
    # name, frames, step minutes, shape, >=30 %, >=40 % (of valid pixels), missing fraction
    ("fmi_dbz.nc", 40, 5, (1226, 760), 1.2428, 0.0287, 0.243),
    ("fmi_dbz_2.nc", 40, 5, (1226, 760), 0.1636, 0.0029, 0.243),
    ("mch_rainrate_1.nc", 40, 5, (640, 710), 3.3844, 0.3257, 0.309),
    ("mch_rainrate_2.nc", 40, 5, (640, 710), 4.2669, 0.6386, 0.296),
    ("mch_rainrate_3.nc", 40, 5, (640, 710), 2.3609, 0.0349, 0.284),
    ("bom_prcp-c10/*.nc", 144, 10, (512, 512), 6.1274, 2.5342, 0.0),
]


@needs_shared_radar()
@pytest.mark.parametrize("name,frames,step,shape,p30,p40,missing", SHARED)
def test_shared_radar_files_open_as_documented(name, frames, step, shape, p30, p40, missing):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NowcastWarning)
        da = open_radar(str(SHARED_RADAR / name))
    assert da.shape == (frames,) + shape
    assert time_step(da) == np.timedelta64(step, "m")
    v = da.values
    valid = np.isfinite(v)
    assert abs(1 - valid.mean() - missing) < 0.001
    assert np.nanmin(v) == -10 and 45 < np.nanmax(v) < 60
    assert 100 * (v[valid] >= 30).mean() == pytest.approx(p30, abs=0.002)
    assert 100 * (v[valid] >= 40).mean() == pytest.approx(p40, abs=0.002)
    assert "crs" in da.coords


def test_the_only_variable_with_a_time_axis_is_read_with_one_note(tmp_path):
    """ODIM/CF style: reflectivity (time, y, x) beside a static quality field (y, x)."""
    from nowcast.errors import NowcastNote

    v = storm(n=4)
    quality = (("y", "x"), np.full(v.shape[1:], 0.9, np.float32), {"units": "1"})
    path = write_nc(tmp_path / "with_quality.nc", v, extra_vars={"quality": quality})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        da = open_radar(path)
    np.testing.assert_allclose(da.values, np.maximum(v, -10), atol=1e-6)
    notes = [w for w in caught if issubclass(w.category, NowcastNote)]
    assert len(notes) == 1
    text = str(notes[0].message)
    assert "with_quality.nc" in text and "'reflectivity'" in text and "quality" in text and "--variable" in text
    # asking for it by name reads it silently; asking for the static field is still possible
    with warnings.catch_warnings():
        warnings.simplefilter("error", NowcastNote)
        open_radar(path, variable="reflectivity")


def test_input_kind_is_recorded_for_the_forecast_units(tmp_path):
    rate = np.full((3, 4, 4), 2.0, np.float32)
    assert open_radar(write_nc(tmp_path / "r.nc", rate, units="mm/h")).attrs["input_kind"] == "rate"
    assert open_radar(write_nc(tmp_path / "d.nc", storm(n=3))).attrs["input_kind"] == "dbz"


def test_missing_file_with_brackets_is_named_as_a_file(tmp_path):
    with pytest.raises(NowcastError, match=r"radar\[test\]\.nc: file not found"):
        open_radar(tmp_path / "radar[test].nc")
    with pytest.raises(NowcastError, match="no file matches this pattern"):
        open_radar(tmp_path / "radar_*.nc")


def test_missing_radar_archive_skips_with_a_reason_unless_required(tmp_path, monkeypatch):
    missing = tmp_path / "not_there.nc"
    monkeypatch.delenv("NOWCAST_REQUIRE_RADAR", raising=False)
    mark = needs_shared_radar(missing)
    assert mark.mark.name == "skip"
    reason = mark.mark.kwargs["reason"]
    assert "not_there.nc" in reason and "\n" not in reason and "shared" not in reason
    monkeypatch.setenv("NOWCAST_REQUIRE_RADAR", "1")
    test = needs_shared_radar(missing)(lambda: None)
    with pytest.raises(pytest.fail.Exception, match="NOWCAST_REQUIRE_RADAR=1"):
        test()
    # present: the test runs unchanged
    present = tmp_path / "here.nc"
    present.write_bytes(b"")
    assert needs_shared_radar(present)(len) is len
