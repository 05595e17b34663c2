"""A forecast's input and output as types; the motion estimated once by whoever builds the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import nowcast.motion
from nowcast import pipeline
from nowcast.evaluate import evaluate
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.forecast_io import ForecastInput, check_motion
from nowcast.matched import ProbabilityMatched
from nowcast.methods import resolve
from nowcast.motion import estimate_motion
from nowcast.nn import ModelConfig, build_model
from nowcast.units import DBZ_FLOOR

from radar_files import storm

pytest.importorskip("pysteps")
pytest.importorskip("cv2")

STEP = np.timedelta64(6, "m")


def sequence(n=5, h=40, w=48, dx=2) -> xr.DataArray:
    times = np.datetime64("2026-07-01T12:00", "ns") + STEP * np.arange(n)
    values = storm(n=n, h=h, w=w, dx=dx).astype(np.float32)
    values[-1, :3, :5] = np.nan  # a corner the radar did not see
    da = xr.DataArray(values, dims=("time", "y", "x"),
                      coords={"time": times, "y": np.arange(h) * 1000.0, "x": np.arange(w) * 1000.0},
                      attrs={"input_kind": "rate"})
    return da


@pytest.fixture
def count_flows(monkeypatch):
    """How many optical-flow fields are estimated (every estimate goes through motion.estimate_motion)."""
    calls = []
    real = nowcast.motion.estimate_motion

    def counted(frames, *args, **kwargs):
        calls.append(np.shape(frames))
        return real(frames, *args, **kwargs)

    monkeypatch.setattr(nowcast.motion, "estimate_motion", counted)
    return calls


def test_the_input_holds_frames_times_step_grid_and_kind():
    seq = sequence()
    inp = ForecastInput.from_sequence(seq)
    assert inp.frames.dtype == np.float32 and inp.frames.shape == (5, 40, 48)
    np.testing.assert_array_equal(inp.frames, seq.values)
    assert inp.step == STEP and inp.kind == "rate" and inp.motion is None
    assert inp.grid["time"].values == seq["time"].values[-1]
    np.testing.assert_array_equal(inp.grid["x"].values, seq["x"].values)
    # lead k is valid k steps of 6 minutes after the last frame (12:24)
    expect = np.array(["2026-07-01T12:30", "2026-07-01T12:36", "2026-07-01T12:42"], dtype="datetime64[ns]")
    np.testing.assert_array_equal(inp.valid_times(3), expect)


def test_one_frame_has_no_valid_times():
    inp = ForecastInput.from_sequence(sequence().isel(time=[-1]))
    assert inp.step is None
    with pytest.raises(NowcastError, match="single frame has no time step"):
        inp.valid_times(2)


def test_the_motion_is_the_frames_optical_flow_or_the_one_given():
    seq = sequence()
    np.testing.assert_array_equal(ForecastInput.from_sequence(seq, motion=True).motion, estimate_motion(seq.values))
    given = np.ones((2, 40, 48), np.float32)
    np.testing.assert_array_equal(ForecastInput.from_sequence(seq, motion=given).motion, given)
    with pytest.raises(NowcastError, match=r"shaped \(2, 40, 40\) does not fit frames shaped \(1, 5, 40, 48\)"):
        ForecastInput.from_sequence(seq, motion=np.zeros((2, 40, 40)))
    assert check_motion(given, (1, 5, 40, 48)).shape == (1, 2, 40, 48)
    with pytest.raises(NowcastError, match="per window"):
        check_motion(given, (2, 5, 40, 48))  # one field for two windows


def test_extrapolation_advects_along_the_velocity_it_is_given():
    seq = sequence().values
    # no motion: the last frame stays where it is (floored, its no-data corner kept)
    still = resolve("extrapolation")(seq, 3, motion=np.zeros((2, 40, 48), np.float32))
    last = np.maximum(seq[-1], DBZ_FLOOR)
    for lead in still:
        np.testing.assert_allclose(lead, last, atol=1e-4)
    # 2 pixels a step to the east, given by hand: lead 2 is the last frame 4 pixels east
    east = np.zeros((2, 40, 48), np.float32)
    east[0] = 2.0
    moved = resolve("extrapolation")(seq, 2, motion=east)
    np.testing.assert_allclose(moved[1][:, 10:], last[:, 6:-4], atol=1e-4)
    assert np.isnan(moved[1][:, :4]).all()  # from beyond the grid's western edge: no data


def test_forecast_gives_the_output_with_its_provenance(count_flows):
    inp = ForecastInput.from_sequence(sequence())
    method = ProbabilityMatched(resolve("extrapolation"))
    out = method.forecast(inp, 4)
    assert len(count_flows) == 1  # the input had none: estimated once, and returned
    np.testing.assert_array_equal(out.motion, estimate_motion(inp.frames))
    np.testing.assert_array_equal(out.values, method(inp.frames, 4, motion=out.motion))
    np.testing.assert_array_equal(out.times, inp.valid_times(4))
    np.testing.assert_array_equal(out.nodata, np.isnan(out.values))
    assert out.nodata[:, :3, :5].all()  # the corner the last frame did not see
    assert out.method == "extrapolation+pm" and out.postprocessing == "probability matching to the last observation"
    assert out.input.frames is inp.frames and out.input.motion is out.motion  # the input, with its flow now
    # a method that does not advect needs no flow, and has none
    assert resolve("persistence").forecast(inp, 2).motion is None
    assert len(count_flows) == 1  # (the test's own estimate_motion is the unpatched one)


def test_a_lagrangian_model_takes_the_flow_it_is_given():
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden=8, kernel_size=3, patch_size=4, residual=True, frame="lagrangian")
    model = build_model(cfg)
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)
    forecaster = ModelForecaster(model, {"config": cfg, "name": "lagrangian"}, device="cpu")
    assert forecaster.uses_motion
    seq = sequence().values
    own = forecaster(seq, 3)
    np.testing.assert_array_equal(forecaster(seq, 3, motion=estimate_motion(seq)), own)
    assert not np.array_equal(forecaster(seq, 3, motion=np.zeros((2, 40, 48), np.float32)), own, equal_nan=True)


def test_evaluate_estimates_each_windows_flow_once(count_flows):
    seq = sequence(n=9)
    methods = [resolve("extrapolation"), resolve("extrapolation-smoothed"),
               ProbabilityMatched(resolve("extrapolation")), resolve("persistence")]
    evaluate([("storm", seq)], methods, n_in=5, n_out=3, stride=1)
    assert len(count_flows) == 2  # 9 frames: two windows of 5 + 3, one flow each for four methods and the reference
    assert all(shape == (5, 40, 48) for shape in count_flows)


def test_the_pipeline_estimates_the_flow_once_and_keeps_it(count_flows):
    seq = sequence()
    result = pipeline.run(seq, resolve("extrapolation"), leads=3)
    assert len(count_flows) == 1
    np.testing.assert_array_equal(result.input.motion, estimate_motion(seq.values[-3:]))  # its 3 input frames
    np.testing.assert_array_equal(result.output.values, result.frames.values)
    assert pipeline.run(seq, resolve("persistence"), leads=3).input.motion is None
