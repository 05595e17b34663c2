"""evaluate(): several methods on the same windows, result layout, strict JSON, table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr

from nowcast.errors import NowcastError
from nowcast.cli.tables import score_table
from nowcast.evaluate import evaluate, to_json
from nowcast.baselines.persistence import Persistence

T0 = np.datetime64("2024-05-01T12:00", "ns")


def moving_blob(n=20, size=64, velocity=(1.5, 2.0), step_minutes=5):
    """A textured cell moving at constant speed over a no-echo background (peak about 55 dBZ)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for t in range(n):
        cy, cx = 20 + velocity[0] * t, 12 + velocity[1] * t
        core = 65 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 7.0 ** 2))
        knot = 8 * np.exp(-((yy - cy - 4) ** 2 + (xx - cx + 3) ** 2) / (2 * 2.0 ** 2))
        frames.append(-10 + core + knot)
    times = T0 + np.arange(n) * np.timedelta64(step_minutes, "m")
    return xr.DataArray(np.array(frames, np.float32), dims=("time", "y", "x"), coords={"time": times})


def strict_loads(text):
    def refuse(const):
        raise ValueError(f"non-strict JSON constant {const}")

    return json.loads(text, parse_constant=refuse)


class Shifted:
    """A stand-in method: the last frame shifted by one pixel (cheap, deterministic)."""

    name = "shifted"

    def __call__(self, inputs, n_out):
        return np.repeat(np.roll(inputs[:, -1:], 1, axis=-1), n_out, axis=1)


def test_extrapolation_beats_persistence_on_moving_blob():
    pytest.importorskip("pysteps")
    pytest.importorskip("cv2")
    from nowcast.baselines.extrapolation import Extrapolation

    calls = []
    result = evaluate([("blob", moving_blob())], [Persistence(), Extrapolation()], stride=2,
                      progress=lambda done, total: calls.append((done, total)))
    assert result.windows == 3 and result.skipped_windows == 0
    assert calls[-1] == (3, 3)
    per, ext = result.method("persistence"), result.method("extrapolation")
    for t in (30, 40):
        assert ext.scores.at(t).csi > per.scores.at(t).csi + 0.3
    assert ext.scores.mse < per.scores.mse and ext.scores.ssim > per.scores.ssim
    assert ext.seconds_per_window > 0 and per.seconds_per_window > 0

    loaded = strict_loads(to_json(result))
    assert loaded["results"]["extrapolation"]["csi"]["30"] == ext.scores.at(30).csi


def test_result_layout_and_strict_json_with_nan():
    result = evaluate([("a", moving_blob(16)), ("b", moving_blob(17))], [Persistence(), Shifted()],
                      thresholds=(60, 30, 40), batch_size=1)
    assert result.windows == 2 + 3
    assert result.thresholds == (30.0, 40.0, 60.0)
    assert result.input_frames == 5 and result.lead_frames == 10
    assert result.time_step_minutes == 5.0
    assert [d.name for d in result.data] == ["a", "b"]
    assert list(result.results) == ["persistence", "shifted"]
    d = result.to_dict()
    assert list(d) == ["windows", "skipped_windows", "too_short_sequences", "input_frames", "lead_frames",
                       "time_step_minutes", "thresholds_dbz", "domain", "data", "data_windows", "results"]
    assert d["domain"] == "observed"
    assert d["thresholds_dbz"] == [30, 40, 60] and d["data"] == ["a", "b"]
    assert d["data_windows"] == {"a": {"windows": 2, "skipped_windows": 0},
                                 "b": {"windows": 3, "skipped_windows": 0}}
    r = d["results"]["persistence"]
    assert list(r) == ["csi", "csi_per_lead", "pod", "pod_per_lead", "far", "far_per_lead", "bias",
                       "bias_per_lead", "gdl", "mse", "mae", "ssim", "gdl_per_lead", "mse_per_lead",
                       "mae_per_lead", "ssim_per_lead", "counts", "counts_per_lead", "valid_pixels",
                       "nan_observation_pixels", "nan_forecast_pixels", "frames", "empty_observation_frames",
                       "coverage", "coverage_per_lead", "invented_heavy", "invented_heavy_per_lead",
                       "heavy_pixels_per_lead", "invented_pixels_per_lead", "seconds_per_window"]
    assert r["coverage"] == 1.0 and r["coverage_per_lead"] == [1.0] * 10
    assert r["counts_per_lead"]["30"]["hits"] == [c.hits for c in result.method("persistence").scores.at(30)
                                                  .counts_per_lead]
    for key in ("csi", "pod", "far", "bias"):
        assert set(r[key]) == {"30", "40", "60"}
        assert all(len(v) == 10 for v in r[f"{key}_per_lead"].values())
    for key in ("gdl", "mse", "mae", "ssim"):
        assert isinstance(r[key], float) and len(r[f"{key}_per_lead"]) == 10
    assert set(r["counts"]["30"]) == {"hits", "misses", "false_alarms", "correct_negatives"}
    assert sum(r["counts"]["30"].values()) == 5 * 10 * 64 * 64
    assert math.isnan(r["csi"]["60"])  # the blob never reaches 60 dBZ

    loaded = strict_loads(to_json(result))
    assert loaded["results"]["persistence"]["csi"]["60"] is None
    assert loaded["results"]["persistence"]["csi_per_lead"]["60"] == [None] * 10
    assert "NaN" not in to_json(result)


def test_methods_see_the_same_windows_and_full_frames():
    seen = {}

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __call__(self, inputs, n_out):
            seen.setdefault(self.name, []).append(inputs.copy())
            return np.repeat(inputs[:, -1:], n_out, axis=1)

    seq = moving_blob(22, size=40)
    evaluate([("s", seq)], [Recorder("one"), Recorder("two")], n_in=4, n_out=6, batch_size=3)
    a, b = np.concatenate(seen["one"]), np.concatenate(seen["two"])
    assert a.shape == (22 - 10 + 1, 4, 40, 40)
    np.testing.assert_array_equal(a, b)


def test_short_sequences_counted_and_zero_windows_is_an_error():
    result = evaluate([("long", moving_blob(15)), ("short", moving_blob(9))], [Persistence()])
    assert result.windows == 1 and result.too_short_sequences == ("short",)
    assert result.to_dict()["data_windows"]["short"]["windows"] == 0
    with pytest.raises(NowcastError, match="short.*15 frames|15 frames.*short"):
        evaluate([("short", moving_blob(9))], [Persistence()])
    with pytest.raises(NowcastError, match="0 complete windows"):
        evaluate([], [Persistence()])


def test_bad_methods_are_reported():
    class Wrong:
        name = "wrong"

        def __call__(self, inputs, n_out):
            return inputs[:, -1:]

    with pytest.raises(NowcastError, match="wrong"):
        evaluate([("s", moving_blob(15))], [Wrong()])
    with pytest.raises(NowcastError, match="unique"):
        evaluate([("s", moving_blob(15))], [Persistence(), Persistence()])


def test_score_table_bolds_the_best():
    from rich.console import Console

    result = evaluate([("blob", moving_blob(16))], [Persistence(), Shifted()], thresholds=(30, 40, 50, 60))
    table = score_table(result)
    headers = [c.header for c in table.columns]
    assert headers[:5] == ["method", "CSI≥30", "CSI≥40", "CSI≥50", "CSI≥60"]
    assert "POD≥50" in headers and "FAR≥50" in headers  # the middle threshold
    assert {"GDL", "MSE", "MAE", "SSIM"} <= set(headers)
    assert table.row_count == 2
    csi30 = list(table.columns[1].cells)
    best = 0 if result.method("persistence").scores.at(30).csi > result.method("shifted").scores.at(30).csi else 1
    assert csi30[best].startswith("[bold]") and not csi30[1 - best].startswith("[bold]")
    assert list(table.columns[4].cells) == ["–", "–"]  # CSI>=60 undefined
    console = Console(width=200, record=True)
    console.print(table)
    assert "persistence" in console.export_text()


def test_cli_names_two_runs_best_checkpoints_by_their_paths(tmp_path, capsys):
    # comparing runs/a/best.safetensors with runs/b/best.safetensors must not stop at a name clash
    from nowcast.checkpoint import save_checkpoint
    from nowcast.cli import main
    from nowcast.nn import ModelConfig, build_model

    cfg = ModelConfig(num_layers=1, hidden=4, kernel_size=3, patch_size=4, input_frames=5, output_frames=10)
    paths = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        paths.append(str(save_checkpoint(tmp_path / run / "best.safetensors", build_model(cfg), cfg, {})))
    moving_blob(16).to_netcdf(tmp_path / "radar.nc")
    out = tmp_path / "scores.json"
    rc = main(["evaluate", str(tmp_path / "radar.nc"), "--units", "dBZ", "--model", paths[0], "--model", paths[1],
               "--baseline", "persistence", "--device", "cpu", "--json", str(out)])
    assert rc == 0
    assert set(json.loads(out.read_text())["results"]) == {"a", "b", "persistence"}  # each run by its name
    # the same file twice is still refused
    rc = main(["evaluate", str(tmp_path / "radar.nc"), "--units", "dBZ", "--model", paths[0], "--model", paths[0],
               "--device", "cpu"])
    assert rc == 2 and "named twice" in capsys.readouterr().err


def test_methods_are_scored_on_the_pixels_all_of_them_forecast():
    from nowcast.evaluate import common_targets

    targets = np.full((1, 2, 3, 4), 35.0, dtype=np.float32)
    targets[0, 0, 0, 0] = np.nan
    a = np.full_like(targets, 35.0)
    b = a.copy()
    b[0, 1, :, 0] = np.nan  # an advecting method: no forecast on the inflow column at lead 2
    common = common_targets(targets, [a, b])
    assert np.isnan(common[0, 0, 0, 0]) and np.isnan(common[0, 1, :, 0]).all()
    assert int(np.isfinite(common).sum()) == targets.size - 1 - 3
    assert common_targets(targets, [a]) is targets  # nothing to drop: no copy


class Holey:
    """Persistence with no forecast (NaN) on the first `cols` columns: an advecting method's inflow border."""

    def __init__(self, cols=1, name="holey"):
        self.cols, self.name = cols, name

    def __call__(self, inputs, n_out):
        fc = np.repeat(inputs[:, -1:], n_out, axis=1).copy()
        fc[..., :self.cols] = np.nan
        return fc


def test_a_missing_forecast_is_no_echo_on_observed_pixels_and_coverage_is_counted():
    """Hand-computed: 2 x 4 frames all at 35 dBZ (one observation missing); a method without a forecast on
    column 0 misses there in the default domain, and the common domain drops column 0 for every method."""
    from nowcast.evaluate import scoring_domain

    seq = xr.DataArray(np.full((3, 2, 4), 35.0, np.float32), dims=("time", "y", "x"),
                       coords={"time": T0 + np.arange(3) * np.timedelta64(5, "m")})
    seq[2, 1, 3] = np.nan  # the observation has no data at one pixel
    res = evaluate([("a", seq)], [Persistence(), Holey(1)], thresholds=[30], n_in=2, n_out=1)
    full, holey = res.method("persistence"), res.method("holey")
    assert full.scores.at(30).counts.as_tuple() == (7, 0, 0, 0)
    assert holey.scores.at(30).counts.as_tuple() == (5, 2, 0, 0)  # column 0: two misses
    assert holey.scores.at(30).csi == pytest.approx(5 / 7) and holey.scores.valid_pixels == 7
    assert holey.scores.mae == pytest.approx(2 * 45 / 7)  # the floor (-10) against 35 dBZ at two pixels
    assert holey.coverage.observed_per_lead == (7,) and holey.coverage.forecast_per_lead == (5,)
    assert holey.coverage.pooled == pytest.approx(5 / 7) and full.coverage.per_lead == (1.0,)

    common = evaluate([("a", seq)], [Persistence(), Holey(1)], thresholds=[30], n_in=2, n_out=1, domain="common")
    assert common.domain == "common"
    for m in common.methods:  # both on the 5 pixels with an observation and both forecasts
        assert m.scores.at(30).counts.as_tuple() == (5, 0, 0, 0)
    assert common.method("holey").coverage == holey.coverage  # coverage does not depend on the domain

    targets = seq.values[None, 2:3]
    fc = np.full_like(targets, np.nan)
    scored_targets, (filled,) = scoring_domain("observed", targets, [fc])
    assert scored_targets is targets
    assert np.array_equal(np.isnan(filled), np.isnan(targets)) and np.nanmax(filled) == -10.0
    with pytest.raises(NowcastError, match="scoring domain"):
        evaluate([("a", seq)], [Persistence()], n_in=2, n_out=1, domain="mine")


def _evaluate_cli(tmp_path, name, *args):
    from nowcast.cli import main

    out = tmp_path / f"{name}.json"
    rc = main(["evaluate", str(tmp_path / "radar.nc"), "--units", "dBZ", "--json", str(out), *args])
    assert rc == 0
    return json.loads(out.read_text())


def test_cli_adding_a_method_leaves_the_others_scores_unchanged_and_reports_coverage(tmp_path, capsys):
    moving_blob(17).to_netcdf(tmp_path / "radar.nc")
    alone = _evaluate_cli(tmp_path, "alone", "--baseline", "persistence")
    both = _evaluate_cli(tmp_path, "both", "--baseline", "persistence", "--baseline", "extrapolation")
    table = capsys.readouterr().out
    pers = {k: v for k, v in alone["results"]["persistence"].items() if k != "seconds_per_window"}
    assert {k: both["results"]["persistence"][k] for k in pers} == pers  # to the last bit
    extra = both["results"]["extrapolation"]
    assert extra["coverage"] < 1.0 and len(extra["coverage_per_lead"]) == 10
    lead = extra["coverage_per_lead"]
    assert lead[-1] < lead[0] <= 1.0  # the inflow border grows with lead
    assert extra["nan_forecast_pixels"] == 0  # scored everywhere: a missing forecast is no echo
    assert "coverage" in table and f"{100 * extra['coverage']:.1f}" in table
    assert "every observed pixel" in table
    # the old view on request: persistence is then scored on extrapolation's pixels only
    common = _evaluate_cli(tmp_path, "common", "--baseline", "persistence", "--baseline", "extrapolation",
                           "--domain", "common")
    assert common["domain"] == "common"
    assert common["results"]["persistence"]["valid_pixels"] < pers["valid_pixels"]
    assert common["results"]["extrapolation"]["coverage"] == extra["coverage"]
