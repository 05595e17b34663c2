import numpy as np
import pytest
import xarray as xr
from radar_files import storm, write_nc

from nowcast.errors import NowcastError
from nowcast.forecast_file import forecast_dataarray, write_forecast
from nowcast.methods import Persistence
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
