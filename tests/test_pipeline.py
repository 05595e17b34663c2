"""`nowcast.predict`: the library call gives the forecast file that `nowcast predict` writes."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import nowcast
from nowcast.cli import main
from nowcast.errors import NowcastError
from nowcast.netcdf import DBZ_PACKING_STEP, write_dataset

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
CREATION_TIME = ("history",)  # the one attribute that says when a file was made


def _global_attrs(ds):
    return {k: v for k, v in ds.attrs.items() if k not in CREATION_TIME}


def _assert_same_files(a, b):
    """Every variable of two netCDF files, as stored (packed ints, fill values): values, dims and attributes."""
    with xr.open_dataset(a, decode_cf=False) as x, xr.open_dataset(b, decode_cf=False) as y:
        assert set(x.variables) == set(y.variables)
        for name in x.variables:
            assert x[name].dims == y[name].dims, name
            np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)
            assert repr(x[name].attrs) == repr(y[name].attrs), name  # repr: NaN fill values compare equal
        assert _global_attrs(x) == _global_attrs(y)


@pytest.fixture(scope="module")
def extrapolation():
    return nowcast.predict(str(SAMPLE), method="extrapolation", leads=10)


def test_predict_equals_the_file_the_command_writes(tmp_path, extrapolation):
    written = tmp_path / "cli.nc"
    assert main(["predict", str(SAMPLE), "--method", "extrapolation", "-o", str(written)]) == 0
    # the Dataset, written as the command writes, is the command's file to the last stored bit
    mine = write_dataset(extrapolation, tmp_path / "library.nc")
    _assert_same_files(written, mine)
    # and the file reads back to the Dataset: coordinates and attributes exactly, values to the packing step
    with xr.open_dataset(written) as ds:
        assert set(ds.variables) == set(extrapolation.variables)
        for name in ds.coords:
            np.testing.assert_array_equal(ds[name].values, extrapolation[name].values, err_msg=name)
        assert ds["reflectivity"].attrs == extrapolation["reflectivity"].attrs
        np.testing.assert_array_equal(np.isnan(ds["reflectivity"].values),
                                      np.isnan(extrapolation["reflectivity"].values))
        np.testing.assert_allclose(ds["reflectivity"].values, extrapolation["reflectivity"].values,
                                   atol=DBZ_PACKING_STEP / 2 + 1e-5, rtol=0)  # + float32 rounding at 30 dBZ
        assert _global_attrs(ds) == _global_attrs(extrapolation)
    assert extrapolation.attrs["nowcast_method"] == "extrapolation"
    assert extrapolation.sizes["time"] == 10


def test_a_dataarray_gives_the_same_forecast(tmp_path, extrapolation):
    seq = nowcast.open_radar(str(SAMPLE))
    from_array = nowcast.predict(seq, method="extrapolation", leads=10)
    _assert_same_files(write_dataset(extrapolation, tmp_path / "a.nc"), write_dataset(from_array, tmp_path / "b.nc"))
    np.testing.assert_array_equal(from_array["reflectivity"].values, extrapolation["reflectivity"].values)


def test_a_gap_among_the_last_frames_is_refused():
    seq = nowcast.open_radar(str(SAMPLE))
    gappy = seq.isel(time=[i for i in range(seq.sizes["time"]) if i != seq.sizes["time"] - 2])
    with pytest.raises(NowcastError, match="source DataArray: the last 3 frames are not evenly spaced"):
        nowcast.predict(gappy, method="extrapolation")


def test_bad_arguments_name_the_parameter():
    seq = nowcast.open_radar(str(SAMPLE))
    with pytest.raises(NowcastError, match="source DataArray: must have the dimensions"):
        nowcast.predict(seq.transpose("y", "x", "time"), method="persistence")
    with pytest.raises(NowcastError, match="leads must be a whole number"):
        nowcast.predict(seq, method="persistence", leads=0)
    with pytest.raises(NowcastError, match="reading options"):
        nowcast.predict(seq, method="persistence", reading={"units": "dBZ"})


def test_rain_rate_output_and_persistence():
    ds = nowcast.predict(str(SAMPLE), method="persistence", leads=3, output_units="mm/h")
    assert "rain_rate" in ds.data_vars and "reflectivity" not in ds.data_vars
    assert ds.sizes["time"] == 3 and ds["rain_rate"].attrs["units"] == "mm h-1"


def test_the_package_exports_the_entry_points():
    assert callable(nowcast.predict) and callable(nowcast.open_radar) and callable(nowcast.evaluate)
    module = importlib.import_module("nowcast.evaluate")  # the module stays importable by its name
    assert module.evaluate is nowcast.evaluate


def _climbs_back_to_the_cli(args) -> list[str]:
    """Every return from a library module into a CLI module while ``nowcast ARGS`` runs: the steps the command
    sequences itself instead of the library."""
    climbs = []

    def watch(frame, event, _):
        if event == "return" and frame.f_back is not None:
            callee, caller = frame.f_globals.get("__name__", ""), frame.f_back.f_globals.get("__name__", "")
            if callee.startswith("nowcast.") and not callee.startswith("nowcast.cli") and caller.startswith("nowcast.cli"):
                climbs.append(f"{callee}.{frame.f_code.co_name}")

    assert main(args) == 0  # once unwatched, so imports (torch, netCDF4...) are not profiled
    sys.setprofile(watch)
    try:
        assert main(args) == 0
    finally:
        sys.setprofile(None)
    return climbs


def test_a_frames_walk_through_predict_climbs_back_to_the_cli_at_most_five_times(tmp_path):
    # 11 before the pipeline moved into the library (commit ca38223, the same count): the command checked the
    # spec, resolved, took the last frames, ran the method, wrapped, described and wrote the forecast itself
    for method in ("persistence",):
        climbs = _climbs_back_to_the_cli(["predict", str(SAMPLE), "--method", method, "-o", str(tmp_path / "f.nc"),
                                          "--overwrite"])
        assert climbs == ["nowcast.atomic.check_output_path", "nowcast.methods.resolve", "nowcast.radar.open_radar",
                          "nowcast.pipeline.run", "nowcast.netcdf.write_dataset"], climbs
