"""The installed `nowcast` console script, as a user meets it: usage errors, early refusals, brackets.

Every usage error exits with code 2, says what is wrong in at most three lines on stderr, shows no
traceback and writes nothing. Options that can be checked before the work are refused before it: the
tests' inputs are fine, so a forecast would be written if a check came too late.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from radar_files import storm, times, write_nc

from nowcast.cli import main
from nowcast.errors import MissingDependencyError

SCRIPT = Path(sys.executable).with_name("nowcast")


def run_script(args, cwd):
    assert SCRIPT.is_file(), f"console script {SCRIPT} is not installed: pip install the project"
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def radar(tmp_path):
    """A good 8-frame input (12:00 to 12:35, every 5 min) in its own folder."""
    write_nc(tmp_path / "radar.nc", storm(n=8))
    return tmp_path


def _truth_missing_a_lead(folder):
    """Observations of 12:40 to 13:20, without 13:25: the 10th lead of a forecast from 12:35."""
    t = times(10, start="2026-06-01T12:40")[:-1]
    write_nc(folder / "truth.nc", storm(n=9), time=t)
    return "truth.nc"


USAGE_ERRORS = {
    "no-argument": (["predict"], "INPUT"),
    "unknown-command": (["predcit", "radar.nc"], "predict"),
    "leads-zero": (["predict", "radar.nc", "--leads", "0"], "--leads"),
    "stride-zero": (["evaluate", "radar.nc", "--stride", "0"], "--stride"),
    "bad-option-value": (["predict", "radar.nc", "--leads", "ten"], "--leads"),
    "unknown-option": (["predict", "radar.nc", "--lead", "3"], "--lead"),
    "plot-suffix": (["predict", "radar.nc", "--plot", "fc.txt"], "fc.txt"),
    "animate-suffix": (["predict", "radar.nc", "--animate", "fc.mp4"], "fc.mp4"),
    "plot-motion-suffix": (["predict", "radar.nc", "--plot-motion", "motion.nc"], "--plot-motion"),
    "save-motion-suffix": (["predict", "radar.nc", "--save-motion", "motion.png"], "--save-motion"),
    "method-with-model": (["predict", "radar.nc", "--method", "persistence", "--model", "X"], "--model X"),
    "bf16-baseline": (["predict", "radar.nc", "--precision", "bf16", "--method", "extrapolation"], "bf16"),
    "bf16-evaluate-baseline": (["evaluate", "radar.nc", "--baseline", "persistence", "--precision", "bf16"],
                               "bf16"),
    "unknown-output-units": (["predict", "radar.nc", "--output-units", "inches"], "inches"),
    "truth-without-picture": (["predict", "radar.nc", "--truth", "radar.nc"], "--plot"),
    "same-output-twice": (["predict", "radar.nc", "-o", "fc.nc", "--save-motion", "fc.nc"], "fc.nc"),
    "evaluate-json-suffix": (["evaluate", "radar.nc", "--json", "scores.txt"], "scores.txt"),
}


@pytest.mark.parametrize("args,named", list(USAGE_ERRORS.values()), ids=list(USAGE_ERRORS))
def test_usage_error_is_short_exit_2_and_writes_nothing(radar, args, named):
    before = sorted(os.listdir(radar))
    res = run_script(args, radar)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert named in res.stderr
    assert sorted(os.listdir(radar)) == before


def test_truth_not_covering_the_forecast_is_refused_before_the_forecast(radar):
    truth = _truth_missing_a_lead(radar)
    before = sorted(os.listdir(radar))
    res = run_script(["predict", "radar.nc", "--method", "persistence", "--truth", truth, "--plot", "fc.png"],
                     radar)
    assert res.returncode == 2, res.stderr
    assert "does not cover" in res.stderr and "13:25" in res.stderr and "truth.nc" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 3
    assert sorted(os.listdir(radar)) == before  # no forecast.nc: refused before the work


def test_truth_covering_the_forecast_is_drawn(radar):
    write_nc(radar / "truth.nc", storm(n=10), time=times(10, start="2026-06-01T12:40"))
    res = run_script(["predict", "radar.nc", "--method", "persistence", "--truth", "truth.nc", "--plot", "fc.png"],
                     radar)
    assert res.returncode == 0, res.stderr
    assert (radar / "forecast.nc").is_file() and (radar / "fc.png").is_file()


def test_bare_command_prints_the_help_and_exits_2(tmp_path):
    res = run_script([], tmp_path)
    assert res.returncode == 2
    assert "predict" in res.stdout and "evaluate" in res.stdout
    assert "Traceback" not in res.stderr and "error" not in res.stderr


def _commands():
    import typer

    from nowcast.cli import app

    return sorted(typer.main.get_command(app).commands)


PYTHON_TYPES = ("<bool>", "<str>", "<path>", "<Path>", "<int", "<float>", "<list", "list[", "<text>", "<file>",
                "Optional[", "<datetime>", "range>")


def _help(command, columns, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_no_python_types_in_any_help(monkeypatch, capsys):
    commands = _commands()
    assert {"predict", "evaluate", "train", "sample-data", "visualize-trend"} <= set(commands)
    for command in ["--help", *commands]:
        text = _help(command, 200, monkeypatch, capsys) if command != "--help" else None
        if text is None:
            assert main(["--help"]) == 0
            text = capsys.readouterr().out
        for noise in PYTHON_TYPES:
            assert noise not in text, (command, noise)
        assert "../shared" not in text and "/work/" not in text
    train = _help("train", 200, monkeypatch, capsys)
    assert "RADAR_FILE  Training radar files" in train  # the argument, without a type beside it


def test_help_examples_are_whole_commands_at_any_width(monkeypatch, capsys):
    """An example never wraps: each one is a single line of the help at 60 and at 200 columns, whole, so that
    it copies and pastes as one command."""
    from nowcast.cli import app
    import typer

    group = typer.main.get_command(app)
    for command in _commands():
        epilog = group.commands[command].epilog or ""
        examples = [line.strip() for line in epilog.splitlines() if line.strip().startswith(("nowcast ", "torchrun "))]
        assert examples, f"{command} --help has no examples"
        for columns in (60, 200):
            lines = [line.strip() for line in _help(command, columns, monkeypatch, capsys).splitlines()]
            for example in examples:
                assert example in lines, (command, columns, example)
    wide = _help("evaluate", 200, monkeypatch, capsys)  # options use a wide terminal: fewer wrapped lines
    assert max(len(line) for line in wide.splitlines()) > 100


def test_help_has_no_type_noise_and_states_the_real_default(tmp_path):
    for command in ("predict", "train"):  # the installed script too
        res = run_script([command, "--help"], tmp_path)
        assert res.returncode == 0, res.stderr
        for noise in PYTHON_TYPES:
            assert noise not in res.stdout, (command, noise)
    predict_help = run_script(["predict", "--help"], tmp_path).stdout
    assert "default: model, the shipped Lagrangian MotionRNN" in " ".join(predict_help.split())


def test_output_name_with_brackets_is_written_and_named(radar):
    res = run_script(["predict", "radar.nc", "--method", "persistence", "-o", "fc[v2].nc"], radar)
    assert res.returncode == 0, res.stderr
    assert (radar / "fc[v2].nc").is_file()
    assert "wrote fc[v2].nc" in res.stdout


def test_missing_input_with_brackets_is_named(tmp_path):
    res = run_script(["predict", "radar[test].nc"], tmp_path)
    assert res.returncode == 2
    assert "radar[test].nc" in res.stderr and "not found" in res.stderr


def test_brackets_in_error_messages_survive(monkeypatch, capsys, tmp_path):
    """An install hint such as nowcast[cluster] is printed as written, not eaten as rich markup."""
    import nowcast.methods

    def missing(*args, **kwargs):
        raise MissingDependencyError("needs dask: pip install 'nowcast[cluster]'")

    monkeypatch.setattr(nowcast.methods, "resolve", missing)
    write_nc(tmp_path / "radar.nc", storm(n=8))
    code = main(["predict", str(tmp_path / "radar.nc"), "-o", str(tmp_path / "fc.nc")])
    assert code == 2
    assert "pip install 'nowcast[cluster]'" in capsys.readouterr().err


def test_rain_rate_input_gives_a_rain_rate_forecast_unless_told(tmp_path):
    rate = np.maximum(storm(n=8), 0) / 10  # mm/h
    write_nc(tmp_path / "rain.nc", rate, units="mm/h")
    assert main(["predict", str(tmp_path / "rain.nc"), "--method", "persistence", "-o", str(tmp_path / "r.nc")]) == 0
    ds = xr.open_dataset(tmp_path / "r.nc")
    assert "reflectivity" not in ds and ds["rain_rate"].attrs["units"] == "mm h-1"
    # persistence of the last frame: the rate comes back through dBZ (Marshall-Palmer) within float rounding
    np.testing.assert_allclose(ds["rain_rate"].values[0], rate[-1], rtol=1e-4, atol=0.01)  # below ~0.009 mm/h is no echo
    assert main(["predict", str(tmp_path / "rain.nc"), "--method", "persistence", "-o", str(tmp_path / "d.nc"),
                 "--output-units", "dBZ"]) == 0
    assert xr.open_dataset(tmp_path / "d.nc")["reflectivity"].attrs["units"] == "dBZ"
