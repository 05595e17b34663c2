"""Training settings: nested config, flat names, TOML with overrides, and what a resume may change."""

from __future__ import annotations

from pathlib import Path

import pytest

from nowcast.errors import NowcastError
from nowcast.train import OptimConfig, TrainConfig, load_toml
from nowcast.train.config import resumed


def test_flat_names_and_dotted_keys_set_the_same_setting():
    a = TrainConfig.from_flat(lr=1e-3, num_layers=2, val_every=10, n_in=3, amp="off", min_lr=1e-5)
    b = TrainConfig().override({"optim.lr": 1e-3, "model.num_layers": 2, "validation.every": 10,
                                "model.input_frames": 3, "run.precision": "fp32", "optim.min_lr": 1e-5})
    assert a == b
    assert a.optim.lr == 1e-3 and a.model.num_layers == 2 and a.run.precision == "fp32"
    # the sampler's frame counts follow the model's
    assert a.data.n_in == 3 and a.data.n_out == 10


def test_motion_off_turns_the_highway_off_too():
    c = TrainConfig.from_flat(motion=False)
    assert c.model.motion is False and c.model.highway is False
    c = TrainConfig.from_flat(motion=False, highway=True)
    assert c.model.highway is True


def test_to_dict_round_trip_and_flat_keys():
    c = TrainConfig.from_flat(coarsen_factors=(1, 3), val_thresholds=(25, 35), lr_schedule="cosine")
    d = c.to_dict()
    assert d["data"]["coarsen_factors"] == [1, 3] and "n_in" not in d["data"]
    assert TrainConfig.from_dict(d) == c
    assert c.flat()["optim.lr_schedule"] == "cosine"


def test_settings_not_nested_by_section_are_refused():
    # the flat layout of the first training loop: nothing writes it, and such a run cannot resume
    with pytest.raises(NowcastError, match="unknown training settings section.*lr"):
        TrainConfig.from_dict({"lr": 1e-3, "num_layers": 2})
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_the_motion_cache_folder_is_a_run_setting_a_resume_may_move():
    from nowcast.train.trainer import motion_cache

    lagrangian = TrainConfig.from_flat(frame="lagrangian", residual=True, motion_cache="/shared/flow")
    assert lagrangian.run.motion_cache == "/shared/flow"
    assert motion_cache(lagrangian, Path("runs/a")).folder == Path("/shared/flow")
    in_run_folder = motion_cache(TrainConfig.from_flat(frame="lagrangian", residual=True), Path("runs/a"))
    assert in_run_folder.folder == Path("runs/a/motion_cache")
    assert motion_cache(TrainConfig(), Path("runs/a")) is None  # an Eulerian run draws no flow
    moved = resumed(lagrangian.to_dict(), {"run.motion_cache": "/elsewhere"})
    assert moved.run.motion_cache == "/elsewhere"


def test_bad_settings_are_refused_with_their_name():
    with pytest.raises(NowcastError, match="unknown setting 'learning_rate'"):
        TrainConfig.from_flat(learning_rate=1)
    with pytest.raises(NowcastError, match="optim.momentum"):
        TrainConfig().override({"optim.momentum": 0.9})
    with pytest.raises(NowcastError, match="lr_schedule"):
        TrainConfig.from_flat(lr_schedule="step")
    with pytest.raises(NowcastError, match="min_lr"):
        OptimConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(NowcastError, match="precision"):
        TrainConfig.from_flat(precision="int8")
    with pytest.raises(NowcastError, match="crop 30 is not a multiple"):
        TrainConfig.from_flat(crop=30, patch_size=4)


def test_one_layer_with_motion_is_refused():
    with pytest.raises(NowcastError, match="motion needs at least 2 layers"):
        TrainConfig.from_flat(num_layers=1, motion=True)
    assert TrainConfig.from_flat(num_layers=1, motion=False).model.num_layers == 1


def test_toml_tables_and_flat_names_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('iterations = 50\n[model]\nhidden = 16\nnum_layers = 2\n'
                    '[optim]\nlr = 1e-3\nlr_schedule = "cosine"\nmin_lr = 1e-5\n'
                    '[data]\ncoarsen_factors = [1]\n[validation]\nthresholds = [20, 30]\n')
    changes = load_toml(path)
    assert changes["model.hidden"] == 16 and changes["iterations"] == 50
    # the command line comes after the file
    c = TrainConfig().override({**changes, "optim.lr": 2e-3})
    assert (c.optim.iterations, c.model.hidden, c.optim.lr, c.optim.min_lr) == (50, 16, 2e-3, 1e-5)
    assert c.data.coarsen_factors == (1,) and c.validation.thresholds == (20, 30)


def test_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nwidth = 3\n")
    with pytest.raises(NowcastError, match="bad.toml: unknown setting 'model.width'"):
        TrainConfig().override(load_toml(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("iterations = \n")
    with pytest.raises(NowcastError, match="broken.toml: cannot read"):
        load_toml(broken)
    with pytest.raises(NowcastError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[modle]\nhidden = 3\n")
    with pytest.raises(NowcastError, match="wrong.toml: unknown setting 'modle'"):
        load_toml(wrong)


def test_resume_keeps_the_run_settings_and_allows_safe_changes():
    saved = TrainConfig.from_flat(hidden=8, num_layers=2, lr=1e-3, iterations=10).to_dict()
    c = resumed(saved, {"optim.iterations": 20, "validation.every": 5, "run.out": "x"})
    assert c.model.hidden == 8 and c.optim.lr == 1e-3 and c.optim.iterations == 20 and c.run.resume
    # repeating a setting with the run's value is fine
    assert resumed(saved, {"model.hidden": 8}).model.hidden == 8
    with pytest.raises(NowcastError, match="model.hidden is 8 in the run, not 16"):
        resumed(saved, {"model.hidden": 16})
    with pytest.raises(NowcastError, match="optim.lr"):
        resumed(saved, {"lr": 5e-4})
