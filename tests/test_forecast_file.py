import numpy as np
import pytest
import xarray as xr
from radar_files import storm, write_nc

from nowcast.errors import NowcastError
from nowcast.forecast_file import forecast_dataarray, write_forecast
from nowcast.baselines.persistence import Persistence
from nowcast.radar import open_radar


@pytest.fixture
def inputs(tmp_path):
    v = storm(n=6)
    v[:, :3, :3] = np.nan  # a no-data corner
    return open_radar(write_nc(tmp_path / "in.nc", v))


def test_future_timestamps_and_reference_time(inputs):
    fc = forecast_dataarray(np.zeros((10,) + inputs.shape[1:]), inputs, "persistence")
    last = inputs["time"].values[-1]
    expected = last + np.arange(1, 11) * np.timedelta64(5, "m")
    np.testing.assert_array_equal(fc["time"].values, expected)
    assert fc["forecast_reference_time"].values == last
    np.testing.assert_array_equal(fc["forecast_period"].values, np.arange(1, 11) * np.timedelta64(5, "m"))


def test_round_trip_through_open_radar_and_plain_xarray(inputs, tmp_path):
    values = Persistence()(inputs.values, 10)
    fc = forecast_dataarray(values, inputs, "persistence")
    path = tmp_path / "fc.nc"
    write_forecast(fc, path, inputs=inputs)

    back = open_radar(path)
    assert back.shape == (10,) + inputs.shape[1:]
    assert np.array_equal(np.isnan(back.values), np.isnan(values))
    assert np.nanmax(np.abs(back.values - values)) <= 0.005 + 1e-6  # int16 packing at 0.01 dBZ
    np.testing.assert_array_equal(back["x"].values, inputs["x"].values)
    np.testing.assert_array_equal(back["time"].values, fc["time"].values)

    ds = xr.open_dataset(path)
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert "persistence" in ds.attrs["source"] and "nowcast" in ds.attrs["source"]
    for key in ("title", "institution", "history"):
        assert ds.attrs[key]
    refl = ds["reflectivity"]
    assert refl.dims == ("time", "y", "x")
    assert refl.attrs["units"] == "dBZ"
    assert refl.attrs["standard_name"] == "equivalent_reflectivity_factor"
    assert refl.attrs["grid_mapping"] == "crs"
    assert ds["crs"].attrs["grid_mapping_name"] == "azimuthal_equidistant"
    assert refl.encoding["dtype"] == np.int16 and refl.encoding["zlib"]
    assert ds["forecast_reference_time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["forecast_period"].attrs["standard_name"] == "forecast_period"


def test_refuses_existing_output_and_missing_folder(inputs, tmp_path):
    fc = forecast_dataarray(np.zeros((2,) + inputs.shape[1:]), inputs, "x")
    path = tmp_path / "fc.nc"
    write_forecast(fc, path)
    with pytest.raises(NowcastError, match="exists already"):
        write_forecast(fc, path)
    write_forecast(fc, path, overwrite=True)
    with pytest.raises(NowcastError, match="does not exist"):
        write_forecast(fc, tmp_path / "nope" / "fc.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fc.nc", "in.nc"]  # no temporary left


def _raw_attrs(path):
    """Every variable's attributes exactly as stored (xarray would hide _FillValue and coordinates)."""
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        return {name: {k: var.getncattr(k) for k in var.ncattrs()} for name, var in nc.variables.items()}


def test_coordinates_have_no_fill_value_and_the_grid_mapping_lists_no_coordinates(inputs, tmp_path):
    path = tmp_path / "fc.nc"
    write_forecast(forecast_dataarray(Persistence()(inputs.values, 3), inputs, "persistence"), path)
    attrs = _raw_attrs(path)
    for name in ("time", "x", "y", "forecast_period", "forecast_reference_time", "lat", "lon"):
        assert "_FillValue" not in attrs[name], name
    assert "coordinates" not in attrs["crs"]
    assert set(attrs["reflectivity"]["coordinates"].split()) >= {"lat", "lon", "forecast_reference_time"}


def test_latitude_and_longitude_from_the_grid_mapping(inputs, tmp_path):
    """The test grid is azimuthal equidistant around 60 N 25 E with x = 0..47 km, y = 39..0 km."""
    path = tmp_path / "fc.nc"
    write_forecast(forecast_dataarray(np.zeros((2,) + inputs.shape[1:]), inputs, "x"), path)
    ds = xr.open_dataset(path)
    assert ds["lat"].dims == ("y", "x") and ds["lon"].dims == ("y", "x")
    assert ds["lat"].attrs["standard_name"] == "latitude" and ds["lat"].attrs["units"] == "degrees_north"
    assert ds["lon"].attrs["standard_name"] == "longitude" and ds["lon"].attrs["units"] == "degrees_east"
    origin = dict(y=int(np.argmin(np.abs(ds["y"].values))), x=int(np.argmin(np.abs(ds["x"].values))))
    assert float(ds["lat"].isel(origin)) == pytest.approx(60.0, abs=1e-9)
    assert float(ds["lon"].isel(origin)) == pytest.approx(25.0, abs=1e-9)
    # 39 km north of the origin along the central meridian: 39 km / (6371 km * pi / 180) degrees
    top = dict(y=int(np.argmax(ds["y"].values)), x=origin["x"])
    assert float(ds["lat"].isel(top)) - 60.0 == pytest.approx(39.0 / (6371.0 * np.pi / 180), rel=0.01)


def test_bounds_are_written_when_the_axes_reference_them(tmp_path):
    v = storm(n=4, h=6, w=5)
    path = write_nc(tmp_path / "in.nc", v)
    ds = xr.open_dataset(path)
    ds["x"].attrs["bounds"] = "x_bounds"
    ds["y"].attrs["bounds"] = "y_bounds"
    ds.to_netcdf(tmp_path / "with_bounds.nc")
    seq = open_radar(tmp_path / "with_bounds.nc")
    out = tmp_path / "fc.nc"
    write_forecast(forecast_dataarray(np.zeros((2, 6, 5)), seq, "x"), out)
    back = xr.open_dataset(out)
    np.testing.assert_allclose(back["x_bounds"].values[:, 0], 1000.0 * np.arange(5) - 500)
    np.testing.assert_allclose(back["x_bounds"].values[:, 1], 1000.0 * np.arange(5) + 500)
    # y runs north to south (5000 m down to 0 m): each cell still spans +-500 m around its centre
    np.testing.assert_allclose(np.abs(back["y_bounds"].values[:, 1] - back["y_bounds"].values[:, 0]), 1000.0)
    np.testing.assert_allclose(back["y_bounds"].values.mean(axis=1), back["y"].values)


def test_rain_rate_output_by_marshall_palmer(inputs, tmp_path):
    values = np.full((2,) + inputs.shape[1:], 30.0, np.float32)
    values[0, 5, 5] = -10.0  # no echo
    values[1, 0, 0] = np.nan  # no data
    path = tmp_path / "fc.nc"
    write_forecast(forecast_dataarray(values, inputs, "x"), path, units="mm/h")
    ds = xr.open_dataset(path)
    assert "reflectivity" not in ds
    rate = ds["rain_rate"]
    assert rate.attrs["units"] == "mm h-1" and rate.attrs["standard_name"] == "lwe_precipitation_rate"
    # 30 dBZ: Z = 1000 = 200 R^1.6, so R = 5^(1/1.6) mm/h
    assert float(rate.values[0, 10, 10]) == pytest.approx(5 ** (1 / 1.6), rel=1e-5)
    assert rate.values[0, 5, 5] == 0.0 and np.isnan(rate.values[1, 0, 0])
    # read back by nowcast itself, it is the same reflectivity again
    np.testing.assert_allclose(open_radar(path).values[0, 10, 10], 30.0, atol=1e-3)


def test_output_units_follow_the_input_kind_unless_given(inputs):
    from nowcast.forecast_file import output_units

    assert output_units(None, inputs) == "dBZ"
    assert output_units(None, inputs.assign_attrs(input_kind="rate")) == "mm/h"
    assert output_units(None, inputs.assign_attrs(input_kind="accumulation")) == "mm/h"
    assert output_units("MM/H", inputs) == "mm/h" and output_units("dbz") == "dBZ"
    with pytest.raises(NowcastError, match="not understood"):
        output_units("inches")


def test_motion_field_round_trip(inputs, tmp_path):
    from nowcast.forecast_file import write_motion

    velocity = np.stack([np.full(inputs.shape[1:], 1.5), np.full(inputs.shape[1:], -0.5)]).astype(np.float32)
    path = tmp_path / "motion.nc"
    write_motion(velocity, inputs.isel(time=-1), path, step_minutes=5.0)
    ds = xr.open_dataset(path)
    np.testing.assert_array_equal(ds["motion_x"].values, velocity[0])
    np.testing.assert_array_equal(ds["motion_y"].values, velocity[1])
    np.testing.assert_array_equal(ds["x"].values, inputs["x"].values)
    assert ds["motion_x"].attrs["grid_mapping"] == "crs" and "5-minute" in ds["motion_x"].attrs["long_name"]
    with pytest.raises(NowcastError, match="motion field must be"):
        write_motion(velocity[:1], inputs.isel(time=-1), tmp_path / "bad.nc")


def test_one_writer_one_policy(tmp_path):
    """Every file goes through nowcast.netcdf: CF-1.8, no fill value on coordinates, packed dBZ."""
    from nowcast.netcdf import packed_dbz, write_dataset

    da = xr.DataArray(np.array([[[1.234, np.nan], [500.0, -10.0]]], np.float32), dims=("time", "y", "x"),
                      coords={"time": [np.datetime64("2026-01-01T00:00")], "y": [1.0, 0.0], "x": [0.0, 1.0]})
    path = write_dataset(packed_dbz(da).to_dataset(name="reflectivity"), tmp_path / "p.nc")
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert "_FillValue" not in ds["x"].encoding and "_FillValue" not in ds["y"].encoding
        back = ds["reflectivity"].values
        assert ds["reflectivity"].encoding["dtype"] == np.int16
    assert abs(back[0, 0, 0] - 1.234) <= 0.005 and np.isnan(back[0, 0, 1])
    assert back[0, 1, 0] == pytest.approx(327.0)  # clipped to the packed range, not wrapped


# the attributes CF-1.8 defines (and netCDF's own), for the variables a forecast file holds
CF_VARIABLE_ATTRIBUTES = {"_FillValue", "units", "standard_name", "long_name", "axis", "bounds", "calendar",
                          "grid_mapping", "coordinates", "scale_factor", "add_offset", "grid_mapping_name",
                          "longitude_of_projection_origin", "latitude_of_projection_origin", "false_easting",
                          "false_northing", "earth_radius", "semi_major_axis", "inverse_flattening", "crs_wkt",
                          "straight_vertical_longitude_from_pole", "standard_parallel", "scale_factor_at_projection_origin",
                          "proj4"}


@pytest.mark.parametrize("units", ["dBZ", "mm/h"])
def test_forecast_file_has_bounds_and_no_non_cf_attributes(inputs, tmp_path, units):
    """The input's axes name no bounds: the forecast still has x/y bounds (cell edges, 1 km cells), its lead
    time is plain minutes, and no variable carries an attribute CF does not define (such as xarray's 'dtype')."""
    import netCDF4

    out = tmp_path / "fc.nc"
    assert "bounds" not in inputs["x"].attrs
    write_forecast(forecast_dataarray(Persistence()(inputs.values[None], 3)[0], inputs, "persistence"), out,
                   units=units)
    with netCDF4.Dataset(out) as nc:
        for name, var in nc.variables.items():
            extra = set(var.ncattrs()) - CF_VARIABLE_ATTRIBUTES
            assert not extra, (name, extra)
        assert nc["x"].getncattr("bounds") == "x_bounds" and nc["y"].getncattr("bounds") == "y_bounds"
        assert nc["x_bounds"].ncattrs() == [] and nc["forecast_period"].getncattr("units") == "minutes"
        np.testing.assert_array_equal(nc["forecast_period"][:], [5.0, 10.0, 15.0])
        x, xb = nc["x"][:], nc["x_bounds"][:]
        np.testing.assert_allclose(xb[:, 0], x - 500.0) and np.testing.assert_allclose(xb[:, 1], x + 500.0)
        data = nc["reflectivity" if units == "dBZ" else "rain_rate"]
        assert data.dtype == (np.int16 if units == "dBZ" else np.float32)  # rain rate: float32, see conventions
    back = xr.open_dataset(out)
    assert back["forecast_period"].values[0] in (5.0, np.timedelta64(5, "m"))
