"""`nowcast train` through the CLI entry point: output folders, refusals, resume from the run's own settings."""

from __future__ import annotations

import json
from pathlib import Path

from nowcast.cli import main
from nowcast.train import load_train_state

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
TINY = ["--layers", "2", "--hidden", "8", "--kernel", "3", "--patch", "4", "--crop", "16", "--batch-size", "2",
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
    out = tmp_path / "runs" / "lag"
    code = main(["train", str(sample), "--out", str(out), "--frame", "lagrangian", "--layers", "2", "--hidden", "8",
                 "--kernel", "3", "--crop", "32", "--batch-size", "2", "--iterations", "2", "--coarsen", "1",
                 "--time-strides", "1", "--val", str(sample), "--val-every", "2", "--val-stride", "4",
                 "--device", "cpu"])
    assert code == 0
    _, info = load_model(out / "best.safetensors")
    assert info["config"].frame == "lagrangian" and info["config"].residual
    assert any((out / "motion_cache").glob("*.npy"))  # the windows' flow is kept in the run folder
    fc = tmp_path / "fc.nc"
    assert main(["predict", str(sample), "--model", str(out / "best.safetensors"), "-o", str(fc)]) == 0
    assert fc.exists()
