"""A model's forecast smoothed with lead (the shipped default model's recipe): where the width comes from,
that it is exactly postprocess.lead_smoothing of the network's forecast, and the command-line option."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nowcast.checkpoint import read_checkpoint, save_checkpoint
from nowcast.errors import NowcastError
from nowcast.evaluate import MethodSpec
from nowcast.forecast import ModelForecaster
from nowcast.methods import check_spec, check_specs, resolve
from nowcast.options import ModelOptions
from nowcast.nn import ModelConfig, build_model
from nowcast.postprocess import lead_smoothing

TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=3,
            residual=True, frame="lagrangian")


def _tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model, cfg


def _radar(seed=0):
    """A blob of echo moving right on a dry background, with a strip of no data."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:40]
    frames = []
    for t in range(3):
        blob = 45.0 * np.exp(-((yy - 24) ** 2 + (xx - 12 - 2 * t) ** 2) / 40.0)
        frames.append(np.maximum(blob + rng.normal(0, 2, blob.shape), -10.0))
    x = np.stack(frames).astype(np.float32)
    x[:, :, -3:] = np.nan
    return x


@pytest.fixture
def checkpoint(tmp_path):
    def write(meta):
        model, cfg = _tiny()
        return save_checkpoint(tmp_path / f"m{len(list(tmp_path.iterdir()))}.safetensors", model, cfg, meta)
    return write


def test_width_comes_from_the_checkpoint_unless_given(checkpoint):
    raw_path = checkpoint({})
    smooth_path = checkpoint({"lead_smoothing_px": 1.5})
    x = _radar()
    raw = ModelForecaster.from_checkpoint(raw_path, device="cpu")
    assert raw.lead_smoothing == 0.0
    smooth = ModelForecaster.from_checkpoint(smooth_path, device="cpu")
    assert smooth.lead_smoothing == 1.5
    network = raw(x, 3)
    # the recipe is applied after the network (and the advection), frame k with sigma k x 1.5 pixels
    expected = lead_smoothing(network, 1.5)
    got = smooth(x, 3)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) < 1e-4
    assert np.nanmax(np.abs(got - network)) > 0.5  # and it does change the forecast
    # an explicit width wins over the checkpoint's, 0 = the network's forecast untouched
    assert np.array_equal(ModelForecaster.from_checkpoint(smooth_path, device="cpu", lead_smoothing=0)(x, 3),
                          network, equal_nan=True)
    assert np.array_equal(ModelForecaster.from_checkpoint(raw_path, device="cpu", lead_smoothing=1.5)(x, 3), got,
                          equal_nan=True)


def test_smoothing_keeps_the_forecast_where_there_is_no_data(checkpoint):
    x = _radar()
    path = checkpoint({"lead_smoothing_px": 2.0})
    smooth = ModelForecaster.from_checkpoint(path, device="cpu")(x, 3)
    raw = ModelForecaster.from_checkpoint(path, device="cpu", lead_smoothing=0)(x, 3)
    # no data stays no data (the strip, and trajectories from beyond the grid) and nothing else becomes it
    assert np.isnan(smooth[:, :, -3:]).all()
    assert np.array_equal(np.isnan(smooth), np.isnan(raw)) and np.isfinite(raw).sum() > raw.size // 2


def test_a_bad_width_in_a_checkpoint_names_the_file(checkpoint):
    for bad in (-1, "wide", float("nan"), True):
        path = checkpoint({"lead_smoothing_px": bad})
        with pytest.raises(NowcastError, match="lead smoothing must be") as err:
            ModelForecaster.from_checkpoint(path, device="cpu")
        assert path.name in str(err.value)


def test_the_option_is_for_models_only(checkpoint):
    path = str(checkpoint({}))
    check_spec("model", path, lead_smoothing=0.5)
    with pytest.raises(NowcastError, match="^lead_smoothing applies to models only, not to the extrapolation"):
        check_spec("extrapolation", None, lead_smoothing=0.5)
    with pytest.raises(NowcastError, match="0 or more"):
        check_spec("model", path, lead_smoothing=-1.0)
    # beside a model, baselines are left alone: the set is accepted and only the model is smoothed
    specs = [("model", path), ("persistence", None)]
    check_specs(specs, lead_smoothing=0.5)
    recipes = MethodSpec.recipes(specs, [resolve(*specs[0]), resolve(*specs[1])], ModelOptions(lead_smoothing=0.5))
    assert [r.options.lead_smoothing for r in recipes] == [0.5, None]
    assert recipes[0].build().lead_smoothing == 0.5


def test_shipped_default_model_carries_its_recipe():
    from nowcast.checkpoint import default_model_path

    meta = read_checkpoint(default_model_path(), tensors=False)[2]
    assert meta["default_method"] is True and meta["lead_smoothing_px"] == 0.5
    # the model card states the same recipe
    card = (default_model_path().parent / meta["model_card"]).read_text()
    assert "lead_smoothing_px: 0.5" in card


def test_cli_option_reaches_the_forecast(tmp_path, checkpoint, capsys):
    import xarray as xr

    from nowcast.cli import main

    path = checkpoint({"lead_smoothing_px": 1.0})
    outs = {}
    for option in ([], ["--lead-smoothing", "0"]):
        out = tmp_path / f"fc{len(outs)}.nc"
        assert main(["predict", "sample_data/radar.nc", "--model", str(path), "--leads", "2", "-o", str(out),
                     *option]) == 0
        with xr.open_dataset(out) as ds:
            outs[tuple(option)] = ds["reflectivity"].values
            notes = ds.attrs["nowcast_postprocessing"]
        # the file says what was done to the network's forecast
        assert notes == ("none" if option else "lead smoothing in linear Z, Gaussian sigma 1 pixel(s) per lead")
    smoothed, raw = outs[()], outs[("--lead-smoothing", "0")]
    assert np.nanmax(np.abs(smoothed - raw)) > 0.5
    assert main(["predict", "sample_data/radar.nc", "--method", "extrapolation", "--lead-smoothing", "1",
                 "-o", str(tmp_path / "x.nc")]) == 2
    assert "--lead-smoothing applies to models only" in capsys.readouterr().err
    # evaluate: the option changes the model's scores, not the baseline's
    scores = {}
    for option in ("0", "2"):
        js = tmp_path / f"s{option}.json"
        assert main(["evaluate", "sample_data/radar.nc", "--model", str(path), "--baseline", "persistence",
                     "--lead-frames", "2", "--stride", "4", "--lead-smoothing", option, "--json", str(js)]) == 0
        scores[option] = json.loads(js.read_text())["results"]
    name = path.stem
    assert scores["0"][name]["mse"] != scores["2"][name]["mse"]
    for run in scores.values():
        run["persistence"].pop("seconds_per_window")
    assert scores["0"]["persistence"] == scores["2"]["persistence"]


def test_postprocessing_is_described(checkpoint):
    path = str(checkpoint({"lead_smoothing_px": 0.5}))
    assert resolve("persistence").postprocessing() == "none"
    assert resolve("model", path, lead_smoothing=0).postprocessing() == "none"
    assert resolve("model", path, prob_match=True).postprocessing() == (
        "lead smoothing in linear Z, Gaussian sigma 0.5 pixel(s) per lead; probability matching to the last observation")
