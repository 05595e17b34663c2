"""`nowcast predict` end to end, in process: sample data and every shared radar dataset."""

import warnings

import numpy as np
import pytest
import xarray as xr
from radar_files import SHARED_RADAR

from nowcast.cli import main
from nowcast.errors import NowcastWarning
from nowcast.radar import open_radar



def _check_forecast(path, source, leads=10):
    ds = xr.open_dataset(path)
    assert ds["reflectivity"].dims == ("time", "y", "x")
    assert ds.sizes["time"] == leads
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NowcastWarning)
        seq = open_radar(source)
    step = seq["time"].values[-1] - seq["time"].values[-2]
    expected = seq["time"].values[-1] + step * np.arange(1, leads + 1)
    np.testing.assert_array_equal(ds["time"].values, expected)
    assert ds["forecast_reference_time"].values == seq["time"].values[-1]
    assert ds.sizes["y"] == seq.sizes["y"] and ds.sizes["x"] == seq.sizes["x"]
    values = ds["reflectivity"].values
    # no-data where the last frame had none; valid dBZ elsewhere
    np.testing.assert_array_equal(np.isnan(values[0]), np.isnan(seq.values[-1]))
    assert np.nanmin(values) >= -10 and np.nanmax(values) <= 70


@pytest.mark.parametrize("method", ["persistence", "extrapolation"])
def test_predict_on_the_sample(tmp_path, method):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
    out = tmp_path / "fc.nc"
    assert main(["predict", str(sample), "--method", method, "-o", str(out)]) == 0
    _check_forecast(out, sample)


SHARED = ["fmi_dbz.nc", "fmi_dbz_2.nc", "mch_rainrate_1.nc", "mch_rainrate_2.nc", "mch_rainrate_3.nc",
          "bom_prcp-c10/*.nc"]
FAST_EXTRAPOLATION = {"mch_rainrate_1.nc", "bom_prcp-c10/*.nc"}


def _cases():
    for name in SHARED:
        yield pytest.param(name, "persistence", id=f"{name}-persistence")
        marks = () if name in FAST_EXTRAPOLATION else (pytest.mark.slow,)
        yield pytest.param(name, "extrapolation", id=f"{name}-extrapolation", marks=marks)


@pytest.mark.skipif(not SHARED_RADAR.is_dir(), reason="../shared/radar not present")
@pytest.mark.parametrize("name,method", list(_cases()))
def test_predict_on_shared_radar(tmp_path, name, method):
    source = str(SHARED_RADAR / name)
    out = tmp_path / "fc.nc"
    assert main(["predict", source, "--method", method, "-o", str(out)]) == 0
    _check_forecast(out, source)
