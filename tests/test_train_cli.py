"""`nowcast train` through the CLI entry point: output folders, refusals, resume from the run's own settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nowcast.cli import main
from nowcast.train import load_train_state

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
TINY = ["--preset", "paper", "--layers", "2", "--hidden", "8", "--kernel", "3", "--patch", "4", "--crop", "16", "--batch-size", "2",
        "--coarsen", "1", "--time-strides", "1", "--input-frames", "3", "--lead-frames", "3", "--device", "cpu",
        "--checkpoint-every", "1", "--val-every", "2", "--baselines", "none", "--seed", "2"]


def nowcast_train(*args) -> int:
    return main(["train", str(SAMPLE), *args])


def test_out_with_missing_parents_then_resume_without_architecture_options(tmp_path, capsys):
    out = tmp_path / "runs" / "new" / "tiny"
    assert nowcast_train("--out", str(out), "--iterations", "2", *TINY) == 0
    state = load_train_state(out / "train_state.pt")
    assert state["iteration"] == 2 and state["model_config"]["hidden"] == 8
    # only the out folder and the new length: the architecture and recipe come from the run
    assert nowcast_train("--out", str(out), "--resume", "--iterations", "3") == 0
    state = load_train_state(out / "train_state.pt")
    assert state["iteration"] == 3 and state["model_config"]["hidden"] == 8
    assert json.loads(state["settings"])["optim"]["seed"] == 2
    capsys.readouterr()
    # an architecture change on resume: one clear line, nothing changed
    assert nowcast_train("--out", str(out), "--resume", "--iterations", "4", "--hidden", "16") == 2
    err = capsys.readouterr().err
    assert "model.hidden is 8 in the run, not 16" in err and len(err.strip().splitlines()) <= 3
    assert load_train_state(out / "train_state.pt")["iteration"] == 3


def test_refused_runs_leave_no_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "refused"
    # one layer has no place for a MotionGRU
    assert nowcast_train("--out", str(out), *TINY, "--layers", "1", "--motion") == 2
    assert "motion needs at least 2 layers" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    # a crop larger than the data: refused by the sampler, before any file is written
    assert nowcast_train("--out", str(out), *TINY, "--crop", "256") == 2
    assert not (tmp_path / "runs").exists()
    # resuming where there is no run
    assert nowcast_train("--out", str(out), "--resume") == 2
    assert "no training state" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_toml_config_with_command_line_override(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[model]\nhidden = 4\nnum_layers = 2\nkernel_size = 3\ninput_frames = 3\noutput_frames = 3\n'
                   '[optim]\niterations = 5\nbatch_size = 2\nlr_schedule = "cosine"\nmin_lr = 1e-5\n'
                   '[data]\ncrop = 16\ncoarsen_factors = [1]\ntime_strides = [1]\n'
                   '[validation]\nbaselines = []\n[run]\ndevice = "cpu"\n')
    out = tmp_path / "toml"
    assert main(["train", str(SAMPLE), "--out", str(out), "--config", str(cfg), "--iterations", "1",
                 "--set", "optim.warmup=1"]) == 0
    settings = json.loads(load_train_state(out / "train_state.pt")["settings"])
    assert settings["model"]["hidden"] == 4 and settings["optim"]["min_lr"] == 1e-5
    assert settings["optim"]["iterations"] == 1 and settings["optim"]["warmup"] == 1  # the command line wins
    assert settings["optim"]["lr_schedule"] == "cosine"


def test_lagrangian_training_end_to_end_then_predict(tmp_path):
    """`--frame lagrangian` trains a residual Lagrangian model whose checkpoint forecasts through predict."""
    from nowcast.checkpoint import load_model
    from nowcast.cli import main

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
    out, shared = tmp_path / "runs" / "lag", tmp_path / "runs" / "flow"
    code = main(["train", str(sample), "--out", str(out), "--frame", "lagrangian", "--layers", "2", "--hidden", "8",
                 "--kernel", "3", "--crop", "32", "--batch-size", "2", "--iterations", "2", "--coarsen", "1",
                 "--time-strides", "1", "--val", str(sample), "--val-every", "2", "--val-stride", "4",
                 "--device", "cpu", "--motion-cache", str(shared)])
    assert code == 0
    _, info = load_model(out / "best.safetensors")
    assert info["config"].frame == "lagrangian" and info["config"].residual
    # the windows' flow is kept where --motion-cache says (by default: the run folder's motion_cache)
    assert any(shared.glob("*.npy")) and not (out / "motion_cache").exists()
    fc = tmp_path / "fc.nc"
    assert main(["predict", str(sample), "--model", str(out / "best.safetensors"), "-o", str(fc)]) == 0
    assert fc.exists()


def test_resume_with_overwrite_is_refused_before_anything(tmp_path, capsys):
    out = tmp_path / "storm"
    assert nowcast_train("--out", str(out), "--resume", "--overwrite") == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_resume_below_the_runs_iteration_says_so(tmp_path, capsys):
    out = tmp_path / "storm"
    assert nowcast_train("--out", str(out), "--iterations", "2", *TINY) == 0
    capsys.readouterr()
    assert nowcast_train("--out", str(out), "--resume", "--iterations", "1") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "at iteration 2, not below --iterations 1" in err and "nothing to train" in err
    assert load_train_state(out / "train_state.pt")["iteration"] == 2


def test_default_preset_is_the_shipped_models_recipe_and_paper_is_the_papers():
    from nowcast.checkpoint import default_model_path, read_checkpoint
    from nowcast.train import TrainConfig
    from nowcast.train.config import preset

    _, model_config, meta = read_checkpoint(default_model_path(), tensors=False)
    settings = meta["settings"] if isinstance(meta["settings"], dict) else json.loads(meta["settings"])
    shipped, ours = TrainConfig.from_dict(settings).flat(), preset("default").flat()
    # the shipped model trained in bf16 on a CPU with native bf16; the preset's auto picks that there, fp32 elsewhere
    where_it_ran = {"run.out", "run.device", "run.overwrite", "run.precision"}
    differ = {k for k in ours if k not in where_it_ran and ours[k] != shipped[k]}
    assert differ == {"optim.min_lr"} and abs(ours["optim.min_lr"] - shipped["optim.min_lr"]) < 1e-12
    # the cap was put on the trained weights afterwards (checkpoint.rewrite_settings); they trained without it
    assert preset("default").model == dataclasses.replace(model_config, growth_cap_dbz=None)
    assert model_config.growth_cap_dbz == 3.0 and model_config.growth_cap_radius == 4
    paper = preset("paper")
    assert (paper.model.frame, paper.model.num_layers, paper.model.hidden, paper.model.kernel_size) == \
        ("eulerian", 4, 64, 5)
    assert paper.optim.iterations == 100_000


def test_a_run_folder_is_a_model_named_after_the_run(tmp_path, capsys):
    """--model RUN_DIR: its best checkpoint, else its last, named after the run in the file and the notes."""
    import xarray as xr

    from nowcast.checkpoint import run_checkpoint, save_checkpoint
    from nowcast.nn import ModelConfig, build_model

    cfg = ModelConfig(num_layers=2, hidden=4, kernel_size=3, patch_size=4, input_frames=5, output_frames=10)
    run = tmp_path / "runs" / "storm"
    run.mkdir(parents=True)
    save_checkpoint(run / "last.safetensors", build_model(cfg), cfg, {})
    assert run_checkpoint(run).name == "last.safetensors"
    out = tmp_path / "fc.nc"
    assert main(["predict", str(SAMPLE), "--model", str(run), "-o", str(out), "--device", "cpu"]) == 0
    assert xr.open_dataset(out).attrs["nowcast_method"] == "storm/last"
    capsys.readouterr()
    save_checkpoint(run / "best.safetensors", build_model(cfg), cfg, {})
    assert main(["predict", str(SAMPLE), "--model", str(run), "-o", str(out), "--device", "cpu", "--overwrite"]) == 0
    assert xr.open_dataset(out).attrs["nowcast_method"] == "storm"
    err = capsys.readouterr().err
    assert "note: storm is not the recommended" in err  # the notes name the run, not 'best' or 'last'
    empty = tmp_path / "runs" / "empty"
    empty.mkdir()
    assert main(["predict", str(SAMPLE), "--model", str(empty), "-o", str(tmp_path / "x.nc")]) == 2
    assert "holds no trained model" in capsys.readouterr().err


def test_auto_precision_says_what_it_picked_on_this_cpu(tmp_path, capsys):
    from nowcast.runtime import cpu_has_native_bf16

    assert nowcast_train("--out", str(tmp_path / "auto"), "--iterations", "1", *TINY, "--precision", "auto") == 0
    out = capsys.readouterr().out
    picked = "bf16" if cpu_has_native_bf16() else "fp32"
    assert f"training on cpu ({picked}: precision auto" in out
    state = load_train_state(tmp_path / "auto" / "train_state.pt")
    assert json.loads(state["settings"])["run"]["precision"] == "auto"
