"""The method registry (resolve, default_spec, check_spec) and the baselines' output contract."""

from __future__ import annotations

import enum

import numpy as np
import pytest
from scipy import ndimage

import nowcast.forecast
import nowcast.methods as methods
from nowcast.checkpoint import DEFAULT_MODEL_NAME, save_checkpoint
from nowcast.errors import NowcastError, NowcastWarning
from nowcast.baselines.anvil import Anvil
from nowcast.baselines.extrapolation import Extrapolation, SmoothedExtrapolation
from nowcast.baselines.persistence import Persistence
from nowcast.matched import ProbabilityMatched
from nowcast.methods import (
    BUILTIN_METHODS,
    check_spec,
    default_spec,
    get_method,
    method_names,
    resolve,
)
from nowcast.options import ModelOptions, OptionError
from nowcast.units import DBZ_FLOOR
from nowcast.motion import estimate_motion

TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=4)
SPEED = 2  # pixels per frame, to the east


def _tiny_checkpoint(path, **meta):
    import torch

    from nowcast.nn import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    return save_checkpoint(path, build_model(cfg), cfg, meta)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty models folder that the default model is looked up in."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("NOWCAST_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if anything tries to load a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(nowcast.forecast.ModelForecaster, "from_checkpoint", refuse)


def moving_texture(frames=4, h=64, w=96, wet_fraction=0.5, seed=0):
    """Smooth random echoes (-10..50 dBZ, about half dry) moving SPEED pixels per frame to the east."""
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.normal(size=(h, w + SPEED * frames + 8)), 3, mode="wrap")
    big = (big - big.min()) / (big.max() - big.min()) * 60.0 - 10.0
    big = np.where(big >= np.quantile(big, 1 - wet_fraction), big, DBZ_FLOOR)
    start = SPEED * frames
    return np.stack([big[:, start - SPEED * t:start - SPEED * t + w] for t in range(frames)]).astype(np.float32)


# ------------------------------------------------------------------------------------ registry


def test_method_names_are_model_and_the_baselines():
    assert method_names() == ["model", "persistence", "extrapolation", "extrapolation-smoothed", "anvil"]
    assert set(BUILTIN_METHODS) == set(method_names()) - {"model"}


@pytest.mark.parametrize("name, cls", [("persistence", Persistence), ("extrapolation", Extrapolation),
                                       ("extrapolation-smoothed", SmoothedExtrapolation), ("anvil", Anvil)])
def test_resolve_baselines_by_name(name, cls, no_model_loading):
    method = resolve(name)
    assert type(method) is cls and method.name == name
    assert type(get_method(name)) is cls


def test_resolve_accepts_enum_members(no_model_loading):
    Method = enum.Enum("Method", {"extrapolation": "extrapolation"})
    assert resolve(Method.extrapolation).name == "extrapolation"


def test_prob_match_wraps_the_method(no_model_loading):
    method = resolve("extrapolation", prob_match=True)
    assert isinstance(method, ProbabilityMatched) and method.name == "extrapolation+pm"
    assert isinstance(method.inner, Extrapolation) and method.input_frames == 3 and method.min_grid == 16


def test_unknown_method_lists_the_choices(no_model_loading):
    with pytest.raises(NowcastError, match="unknown method 'persistance'; choose one of model, persistence, "
                                           "extrapolation, extrapolation-smoothed, anvil"):
        resolve("persistance")
    with pytest.raises(NowcastError, match="unknown method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize("name", list(BUILTIN_METHODS))
def test_baseline_with_a_model_is_refused(name, tmp_path, no_model_loading):
    ckpt = _tiny_checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(NowcastError, match=f"method {name} does not use model .*m.safetensors"):
        resolve(name, str(ckpt))


@pytest.mark.parametrize("name", list(BUILTIN_METHODS))
def test_bf16_for_a_baseline_is_refused(name, no_model_loading):
    with pytest.raises(NowcastError, match=f"^precision bf16 applies to models only, not to the {name} method"):
        check_spec(name, None, precision="bf16")


def test_bf16_for_the_default_baseline_is_refused(models_dir, no_model_loading):
    with pytest.raises(NowcastError, match="not to the default method, extrapolation"):
        resolve(precision="bf16")


def test_unknown_precision_is_refused(no_model_loading):
    with pytest.raises(NowcastError, match="unknown precision 'fp8'; use auto, fp32, bf16, fp16"):
        resolve("model", precision="fp8")


def test_model_options_are_checked_once_and_name_the_parameter():
    options = ModelOptions(precision="float32", tile_size=np.int64(256), lead_smoothing=1)
    assert (options.precision, options.tile_size, options.lead_smoothing) == ("fp32", 256, 1.0)
    for bad, parameter in [({"precision": "int8"}, "precision"), ({"tile_size": -1}, "tile_size"),
                           ({"tile_size": 1.5}, "tile_size"), ({"lead_smoothing": -1}, "lead_smoothing"),
                           ({"device": "gpu"}, "device"), ({"prob_match": "yes"}, "prob_match")]:
        with pytest.raises(OptionError) as err:
            ModelOptions(**bad)
        assert err.value.parameters[0] == parameter and parameter in str(err.value)
    # auto leaves a baseline as it is: accepted with any method
    check_spec("extrapolation", None, ModelOptions(precision="auto"))
    assert ModelOptions(precision="bf16", tile_size=64).for_baseline() == ModelOptions()


def test_checks_pass_for_models_in_any_precision(tmp_path, no_model_loading):
    check_spec("model", None, precision="bf16")
    check_spec("model", None, ModelOptions(precision="fp16"))
    check_spec(None, str(tmp_path / "m.safetensors"), precision="bf16", prob_match=True)
    check_spec("model", "some-model", precision="fp32")


def test_default_spec_without_a_shipped_model_is_extrapolation(models_dir):
    assert default_spec() == "extrapolation"
    assert resolve().name == "extrapolation"


@pytest.mark.parametrize("flag, expected", [(True, "model"), (False, "extrapolation"), (None, "extrapolation")])
def test_default_spec_follows_the_checkpoint_flag(models_dir, flag, expected):
    meta = {} if flag is None else {"default_method": flag}
    _tiny_checkpoint(models_dir / f"{DEFAULT_MODEL_NAME}.safetensors", **meta)
    assert default_spec() == expected


def test_default_model_is_loaded_when_its_card_says_so(models_dir):
    _tiny_checkpoint(models_dir / f"{DEFAULT_MODEL_NAME}.safetensors", default_method=True)
    method = resolve()
    assert isinstance(method, nowcast.forecast.ModelForecaster) and method.name == DEFAULT_MODEL_NAME
    matched = resolve("model", prob_match=True, precision="bf16")
    assert matched.name == f"{DEFAULT_MODEL_NAME}+pm"
    assert matched.info["name"] == DEFAULT_MODEL_NAME  # the CLI reads the model's card through the wrapper
    assert matched.precision == "bf16"


def test_named_model_is_loaded(tmp_path, models_dir):
    ckpt = _tiny_checkpoint(tmp_path / "mine.safetensors")
    assert resolve(model=str(ckpt)).name == "mine"
    assert resolve("model", str(ckpt)).name == "mine"


def test_default_is_persistence_with_a_warning_without_pysteps(models_dir, monkeypatch):
    monkeypatch.setattr(methods, "_pysteps_available", lambda: False)
    with pytest.warns(NowcastWarning, match="pysteps is not installed, so the forecast is persistence"):
        assert default_spec() == "persistence"


# ------------------------------------------------------------------------------------ baselines


def test_extrapolation_leaves_rain_from_outside_the_domain_as_no_data():
    from pysteps import extrapolation as pext

    seq = moving_texture()
    forecast = Extrapolation()(seq, 5)
    # the same advection with pysteps filling the outside with the floor, as the method did before
    velocity = estimate_motion(seq)
    assert velocity[0].mean() == pytest.approx(SPEED, abs=0.05)
    reference = pext.get_method("semilagrangian")(seq[-1].astype(np.float64), velocity, 5, outval=DBZ_FLOOR)
    for k in range(1, 6):
        nan = np.isnan(forecast[k - 1])
        assert nan[:, :SPEED * k].all(), k  # everything west of where the field's edge has moved to
        assert not nan[1:-1, SPEED * k + 2:].any(), k
        np.testing.assert_allclose(forecast[k - 1][~nan], reference[k - 1][~nan], atol=1e-4)


def test_smoothed_extrapolation_keeps_the_last_frame_intensity_distribution():
    seq = moving_texture()
    last = seq[-1]
    plain = Extrapolation()(seq, 6)
    smoothed = SmoothedExtrapolation()(seq, 6)
    assert np.array_equal(np.isnan(smoothed), np.isnan(plain))
    for k in range(6):
        both = np.isfinite(smoothed[k])
        np.testing.assert_allclose(np.sort(smoothed[k][both]), np.sort(last[both]), atol=1e-4)
    # and it is not the plain extrapolation: the last lead is visibly smoother
    valid = np.isfinite(plain[-1])
    assert np.abs(smoothed[-1] - plain[-1])[valid].mean() > 1.0


def test_probability_matched_persistence_is_persistence():
    seq = moving_texture(frames=2)
    seq[:, :5, :5] = np.nan
    np.testing.assert_array_equal(ProbabilityMatched(Persistence())(seq, 3), Persistence()(seq, 3))


def test_anvil_runs_and_follows_the_contract():
    seq = moving_texture(frames=4)
    seq[:, 30:34, 60:64] = np.nan
    forecast = Anvil()(seq, 3)
    assert forecast.shape == (3, 64, 96) and forecast.dtype == np.float32
    assert np.isnan(forecast[:, 30:34, 60:64]).all()
    assert np.isnan(forecast[:, :, :SPEED]).all()  # beyond the grid: no data
    valid = forecast[np.isfinite(forecast)]
    assert valid.min() >= DBZ_FLOOR and valid.max() < 60.0
    assert np.isfinite(forecast[:, 5:-5, 20:-5]).mean() > 0.95
    # it moves the echoes east like extrapolation: closer to it than to persistence
    extrap, persist = Extrapolation()(seq, 3)[-1], seq[-1]
    ok = np.isfinite(forecast[-1]) & np.isfinite(extrap)
    assert np.abs(forecast[-1] - extrap)[ok].mean() < np.abs(forecast[-1] - persist)[ok].mean()


def test_anvil_needs_four_frames():
    with pytest.raises(NowcastError, match="anvil needs at least 4 input frames, got 3"):
        Anvil()(moving_texture(frames=3), 2)


@pytest.mark.parametrize("flag", [True, False])
def test_comparison_defaults_come_from_the_registry_and_the_cli_scores_them(models_dir, tmp_path, flag):
    """Neither models nor baselines: the default method and persistence beside it, as `nowcast evaluate` runs."""
    import json

    from nowcast import synthetic
    from nowcast.cli import main

    _tiny_checkpoint(models_dir / f"{DEFAULT_MODEL_NAME}.safetensors", default_method=flag)
    specs = methods.comparison_specs()
    assert specs == [(default_spec(), None), ("persistence", None)]
    expected = [m.name for m in methods.resolve_all(specs)]
    assert expected == ([DEFAULT_MODEL_NAME] if flag else ["extrapolation"]) + ["persistence"]
    radar = tmp_path / "radar.nc"
    synthetic.write_netcdf(synthetic.generate(n_frames=16, height=32, width=32, seed=3), radar)
    assert main(["evaluate", str(radar), "--stride", "8", "--json", str(tmp_path / "s.json")]) == 0
    assert list(json.loads((tmp_path / "s.json").read_text())["results"]) == expected


def test_comparison_sets_are_checked_as_a_whole(models_dir, tmp_path, no_model_loading):
    assert methods.comparison_specs(["default", "runs/a.safetensors"], ["persistence"]) == \
        [("model", None), ("model", "runs/a.safetensors"), ("persistence", None)]
    with pytest.raises(NowcastError, match="named twice"):
        methods.check_specs([("persistence", None), ("persistence", None)])
    # bf16 is for the models; baselines beside them run in fp32, baselines alone are refused it
    methods.check_specs([("model", "x.safetensors"), ("extrapolation", None)], precision="bf16")
    with pytest.raises(NowcastError, match="applies to models only"):
        methods.check_specs([("extrapolation", None)], precision="bf16")


def test_two_checkpoints_with_one_name_are_renamed_after_their_files(models_dir, tmp_path):
    # two runs named alike (each best.safetensors is named after its run folder, 'storm')
    (tmp_path / "a" / "storm").mkdir(parents=True)
    (tmp_path / "b" / "storm").mkdir(parents=True)
    a = _tiny_checkpoint(tmp_path / "a" / "storm" / "best.safetensors")
    b = _tiny_checkpoint(tmp_path / "b" / "storm" / "best.safetensors")
    built = methods.resolve_all(methods.comparison_specs([str(a), str(b)], ["persistence"]))
    assert [m.name for m in built] == [str(a), str(b), "persistence"]
