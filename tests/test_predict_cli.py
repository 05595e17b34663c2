"""`nowcast predict` end to end, in process: sample data and every shared radar dataset."""

import warnings

import numpy as np
import pytest
import xarray as xr
from radar_files import SHARED_RADAR, needs_shared_radar

from nowcast.cli import main
from nowcast.errors import NowcastWarning
from nowcast.radar import open_radar
from nowcast.units import rainrate_to_dbz


def _check_forecast(path, source, leads=10, method="persistence"):
    ds = xr.open_dataset(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NowcastWarning)
        seq = open_radar(source)
    # rain-rate input gives a rain-rate forecast (mm/h); compare in dBZ either way
    rain = seq.attrs["input_kind"] in ("rate", "accumulation")
    name = "rain_rate" if rain else "reflectivity"
    assert ds[name].dims == ("time", "y", "x")
    assert ds.sizes["time"] == leads
    step = seq["time"].values[-1] - seq["time"].values[-2]
    expected = seq["time"].values[-1] + step * np.arange(1, leads + 1)
    np.testing.assert_array_equal(ds["time"].values, expected)
    assert ds["forecast_reference_time"].values == seq["time"].values[-1]
    assert ds.sizes["y"] == seq.sizes["y"] and ds.sizes["x"] == seq.sizes["x"]
    values = ds[name].values
    if rain:
        assert ds[name].attrs["units"] == "mm h-1" and np.nanmin(values) >= 0
        values = rainrate_to_dbz(values)
    # no data where the last frame had none; extrapolation also leaves no data where rain would come in
    # from outside the grid, so only persistence keeps exactly the last frame's no-data area
    last_nodata = np.isnan(seq.values[-1])
    assert np.isnan(values[0])[last_nodata].all()
    if method == "persistence":
        np.testing.assert_array_equal(np.isnan(values[0]), last_nodata)
    assert np.nanmin(values) >= -10 and np.nanmax(values) <= 70.01


@pytest.mark.parametrize("method", ["persistence", "extrapolation"])
def test_predict_on_the_sample(tmp_path, method):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
    out = tmp_path / "fc.nc"
    assert main(["predict", str(sample), "--method", method, "-o", str(out)]) == 0
    _check_forecast(out, sample, method=method)


SHARED = ["fmi_dbz.nc", "fmi_dbz_2.nc", "mch_rainrate_1.nc", "mch_rainrate_2.nc", "mch_rainrate_3.nc",
          "bom_prcp-c10/*.nc"]
FAST_EXTRAPOLATION = {"mch_rainrate_1.nc", "bom_prcp-c10/*.nc"}


def _cases():
    for name in SHARED:
        yield pytest.param(name, "persistence", id=f"{name}-persistence")
        marks = () if name in FAST_EXTRAPOLATION else (pytest.mark.slow,)
        yield pytest.param(name, "extrapolation", id=f"{name}-extrapolation", marks=marks)


@needs_shared_radar()
@pytest.mark.parametrize("name,method", list(_cases()))
def test_predict_on_shared_radar(tmp_path, name, method):
    source = str(SHARED_RADAR / name)
    out = tmp_path / "fc.nc"
    assert main(["predict", source, "--method", method, "-o", str(out)]) == 0
    _check_forecast(out, source, method=method)


# ------------------------------------------------------------------------------------ caveats

from types import SimpleNamespace  # noqa: E402

from radar_files import storm, write_nc  # noqa: E402

from nowcast.caveats import model_caveats  # noqa: E402


def _model(output_frames=10, **meta):
    """A stand-in for a ModelForecaster: a name and the info dict a checkpoint gives."""
    return SimpleNamespace(name="tiny", info={"config": SimpleNamespace(output_frames=output_frames), "meta": meta})


def test_baselines_have_no_caveats():
    assert model_caveats(SimpleNamespace(name="extrapolation"), 20, 10.0, is_default=False) == []


def test_default_model_within_its_training_has_no_caveat():
    assert model_caveats(_model(10, step_minutes=5.0), 10, 5.0, is_default=True) == []


def test_a_model_that_is_not_the_default_says_so():
    (line,) = model_caveats(_model(10), 10, 5.0, is_default=False)
    assert "tiny" in line and "not the recommended" in line


def test_leads_past_the_training_leads():
    (line,) = model_caveats(_model(10), 20, 5.0, is_default=True)
    assert "trained to forecast 10 frames" in line and "leads 11 to 20" in line
    assert model_caveats(_model(10), 10, 5.0, is_default=True) == []


def test_another_time_step_than_training():
    (line,) = model_caveats(_model(10, step_minutes=5.0), 10, 10.0, is_default=True)
    assert "every 5 min" in line and "every 10 min" in line
    # within rounding of the stored step: the same step; unknown training step: nothing to compare
    assert model_caveats(_model(10, step_minutes=5.0), 10, 5.04, is_default=True) == []
    assert model_caveats(_model(10), 10, 10.0, is_default=True) == []


def test_every_caveat_at_once_is_one_line_each():
    lines = model_caveats(_model(4, step_minutes=10.0), 6, 5.0, is_default=False)
    assert len(lines) == 3 and all("\n" not in line for line in lines)


def test_predict_prints_the_model_caveats(tmp_path, capsys):
    import torch

    from nowcast.checkpoint import save_checkpoint
    from nowcast.nn import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=4)
    save_checkpoint(tmp_path / "tiny.safetensors", build_model(cfg), cfg, {"step_minutes": 10.0})
    write_nc(tmp_path / "radar.nc", storm(n=6))  # every 5 min
    code = main(["predict", str(tmp_path / "radar.nc"), "--model", str(tmp_path / "tiny.safetensors"),
                 "--leads", "6", "-o", str(tmp_path / "fc.nc")])
    assert code == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 3, notes
    assert any("leads 5 to 6" in n for n in notes) and any("every 10 min" in n for n in notes)
    assert xr.open_dataset(tmp_path / "fc.nc").sizes["time"] == 6


# ------------------------------------------------------------------------------------ motion field


def test_motion_field_is_drawn_and_saved(tmp_path):
    """The storm moves 1 pixel per frame to the east: the saved motion says so where the echo is."""
    write_nc(tmp_path / "radar.nc", storm(n=8, dx=1))
    code = main(["predict", str(tmp_path / "radar.nc"), "--method", "persistence", "-o", str(tmp_path / "fc.nc"),
                 "--plot-motion", str(tmp_path / "motion.png"), "--save-motion", str(tmp_path / "motion.nc")])
    assert code == 0
    assert (tmp_path / "motion.png").read_bytes()[:4] == b"\x89PNG"
    ds = xr.open_dataset(tmp_path / "motion.nc")
    echo = open_radar(tmp_path / "radar.nc").values[-1] > 20
    assert float(ds["motion_x"].values[echo].mean()) == pytest.approx(1.0, abs=0.3)
    assert abs(float(ds["motion_y"].values[echo].mean())) < 0.3
    assert ds["motion_x"].attrs["grid_mapping"] == "crs"


def test_predict_takes_the_runtime_precisions_and_names_flags(tmp_path, capsys):
    """One precision vocabulary (runtime's): auto is accepted; the library's parameter names become flags."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
    out = tmp_path / "fc.nc"
    assert main(["predict", str(sample), "--method", "persistence", "--precision", "auto", "--leads", "2",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", str(sample), "--method", "persistence", "--precision", "bf16",
                 "-o", str(tmp_path / "b.nc")]) == 2
    assert "--precision bf16 applies to models only, not to the persistence method" in capsys.readouterr().err
    assert main(["predict", str(sample), "--precision", "int8", "-o", str(tmp_path / "c.nc")]) == 2
    assert "unknown --precision 'int8'" in capsys.readouterr().err
