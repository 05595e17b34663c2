"""Bad input through the real CLI: exit code 2, one line on stderr naming the file and the problem,
no traceback, and no output file left behind."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from radar_files import storm, times, write_nc


def run_cli(args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="300")
    return subprocess.run([sys.executable, "-m", "nowcast", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


class Marker:
    """Unpickling this would create a file: proof that a loader ran code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _good(tmp_path, n=8, **kw):
    return write_nc(tmp_path / "good.nc", storm(n=n), **kw)


def case_missing_file(p):
    return [str(p / "missing.nc")], "missing.nc", "file not found"


def case_empty_file(p):
    (p / "empty.nc").write_bytes(b"")
    return [str(p / "empty.nc")], "empty.nc", "empty"


def case_text_named_nc(p):
    (p / "notes.nc").write_text("this is a text file\n")
    return [str(p / "notes.nc")], "notes.nc", "not a netCDF file"


def case_truncated_netcdf(p):
    good = write_nc(p / "full.nc", storm(n=30, h=64, w=64))
    (p / "trunc.nc").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    return [str(p / "trunc.nc")], "trunc.nc", "netCDF"


def case_no_time_dimension(p):
    write_nc(p / "flat.nc", storm(n=1)[0], dims=("y", "x"))
    return [str(p / "flat.nc")], "flat.nc", "no time"


def case_too_few_frames(p):
    write_nc(p / "two.nc", storm(n=2))
    return [str(p / "two.nc"), "--method", "extrapolation"], "two.nc", "frame"


def case_single_frame_with_time(p):
    write_nc(p / "one.nc", storm(n=1))
    return [str(p / "one.nc"), "--method", "persistence"], "one.nc", "frame"


def case_all_nan(p):
    write_nc(p / "nan.nc", np.full((6, 20, 20), np.nan, np.float32))
    return [str(p / "nan.nc")], "nan.nc", "no-data"


def case_unknown_units(p):
    write_nc(p / "units.nc", storm(), units="bananas")
    return [str(p / "units.nc")], "units.nc", "--units"


def case_no_units_float(p):
    write_nc(p / "nounits.nc", storm(), units=None)
    return [str(p / "nounits.nc")], "nounits.nc", "no units"


def case_bad_units_option(p):
    _good(p)
    return [str(p / "good.nc"), "--units", "parsecs"], "parsecs", "not understood"


def case_two_candidates(p):
    v = storm()
    write_nc(p / "two_vars.nc", v, extra_vars={"quality": (("time", "y", "x"), v, {"units": "1"})})
    return [str(p / "two_vars.nc")], "two_vars.nc", "--variable"


def case_variable_not_found(p):
    _good(p)
    return [str(p / "good.nc"), "--variable", "rain"], "good.nc", "no variable 'rain'"


def case_times_not_increasing(p):
    write_nc(p / "order.nc", storm(n=6), time=times(6)[[0, 1, 3, 2, 4, 5]])
    return [str(p / "order.nc")], "order.nc", "not increasing"


def case_irregular_steps(p):
    t = np.datetime64("2026-06-01T12:00") + np.array([0, 5, 10, 13, 20, 25], dtype="timedelta64[m]")
    write_nc(p / "irregular.nc", storm(n=6), time=t)
    return [str(p / "irregular.nc")], "irregular.nc", "irregular time steps"


def case_gap_in_last_frames(p):
    write_nc(p / "gap.nc", storm(n=6), time=times(7)[[0, 1, 2, 3, 5, 6]])
    return [str(p / "gap.nc"), "--method", "extrapolation"], "gap.nc", "not evenly spaced"


def case_extra_dimension(p):
    v = np.moveaxis(np.stack([storm(), storm()]), 0, 1)
    write_nc(p / "volume.nc", v, dims=("time", "elevation", "y", "x"))
    return [str(p / "volume.nc")], "volume.nc", "elevation"


def case_bad_select(p):
    v = np.moveaxis(np.stack([storm(), storm()]), 0, 1)
    write_nc(p / "volume.nc", v, dims=("time", "elevation", "y", "x"))
    return [str(p / "volume.nc"), "--select", "elevation=7"], "volume.nc", "outside"


def case_negative_rain(p):
    v = np.abs(storm()) / 10
    v[3, 5, 5] = -40.0
    write_nc(p / "negative.nc", v, units="mm/h")
    return [str(p / "negative.nc")], "negative.nc", "negative rain"


def case_huge_values(p):
    v = storm()
    v[2, 4, 4] = 1e6
    write_nc(p / "huge.nc", v)
    return [str(p / "huge.nc")], "huge.nc", "physical range"


def case_grid_too_small(p):
    write_nc(p / "tiny.nc", storm(h=4, w=4))
    return [str(p / "tiny.nc"), "--method", "extrapolation"], "4x4", "too small"


def case_glob_without_match(p):
    return [str(p / "nothing_*.nc")], "nothing_", "no file matches"


def case_folder_as_input(p):
    (p / "folder").mkdir()
    return [str(p / "folder")], "folder", "is a folder"


def case_unknown_method(p):
    _good(p)
    return [str(p / "good.nc"), "--method", "magic"], "magic", "unknown --method"


def case_model_file_missing(p):
    _good(p)
    return [str(p / "good.nc"), "--model", str(p / "nomodel.safetensors")], "nomodel.safetensors", "not found"


def case_model_is_a_pickle(p):
    _good(p)
    with open(p / "evil.safetensors", "wb") as fh:
        pickle.dump(Marker(str(p / "PWNED")), fh)
    return [str(p / "good.nc"), "--model", str(p / "evil.safetensors")], "evil.safetensors", "checkpoint"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_gives_one_clean_line(case, tmp_path):
    args, names, problem = case(tmp_path)
    before = set(os.listdir(tmp_path))
    out_path = tmp_path / "forecast.nc"
    res = run_cli(["predict", *args, "-o", str(out_path), "--plot", str(tmp_path / "fc.png")], tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert names in lines[0] and problem in lines[0], lines[0]
    assert set(os.listdir(tmp_path)) == before  # nothing written, not even a temporary
    assert not (tmp_path / "PWNED").exists()


def test_output_folder_missing(tmp_path):
    _good(tmp_path)
    res = run_cli(["predict", "good.nc", "--method", "persistence", "-o", "nodir/fc.nc"], tmp_path)
    assert res.returncode == 2 and "nodir" in res.stderr and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_output_exists_is_refused_unless_overwrite(tmp_path):
    _good(tmp_path)
    (tmp_path / "fc.nc").write_text("precious")
    res = run_cli(["predict", "good.nc", "--method", "persistence", "-o", "fc.nc"], tmp_path)
    assert res.returncode == 2 and "fc.nc" in res.stderr and "--overwrite" in res.stderr
    assert (tmp_path / "fc.nc").read_text() == "precious"
    res = run_cli(["predict", "good.nc", "--method", "persistence", "-o", "fc.nc", "--overwrite"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "fc.nc").read_bytes()[:4] == b"\x89HDF"


def test_evaluate_bad_thresholds_and_too_short(tmp_path):
    write_nc(tmp_path / "short.nc", storm(n=6))
    res = run_cli(["evaluate", "short.nc", "--baseline", "persistence", "--thresholds", "30,abc"], tmp_path)
    assert res.returncode == 2 and "--thresholds" in res.stderr
    res = run_cli(["evaluate", "short.nc", "--baseline", "persistence", "--json", "s.json"], tmp_path)
    assert res.returncode == 2 and "short.nc" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s.json").exists()


def test_debug_shows_traceback_and_keeps_exit_code_2(tmp_path):
    plain = run_cli(["predict", "missing.nc", "-o", "fc.nc"], tmp_path)
    res = run_cli(["--debug", "predict", "missing.nc", "-o", "fc.nc"], tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert res.returncode == 2 and "Traceback" in res.stderr and "NowcastError" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1] == plain.stderr.rstrip().splitlines()[-1]  # the same message last
