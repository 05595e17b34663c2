"""Property tests for the scores and the numerical safety of forecasts."""

import json
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nowcast import verify
from nowcast.checkpoint import save_checkpoint
from nowcast.forecast import ModelForecaster
from nowcast.baselines.persistence import Persistence
from nowcast.nn import ModelConfig, build_model

dbz_fields = arrays(np.float32, (2, 6, 7), elements=st.floats(-10, 70, width=32))
thresholds = st.sampled_from([20.0, 30.0, 40.0, 50.0])


@settings(max_examples=150, deadline=None)
@given(dbz_fields, dbz_fields, thresholds)
def test_categorical_scores_are_bounded(fc, obs, t):
    s = verify.categorical_scores(verify.contingency(fc, obs, t))
    for value in (s.csi, s.pod, s.far):
        assert math.isnan(value) or 0.0 <= value <= 1.0
    if not math.isnan(s.csi):
        # CSI never exceeds POD nor 1 - FAR
        assert math.isnan(s.pod) or s.csi <= s.pod + 1e-12
        assert math.isnan(s.far) or s.csi <= 1 - s.far + 1e-12


@settings(max_examples=150, deadline=None)
@given(dbz_fields, dbz_fields, thresholds)
def test_swapping_forecast_and_observation(fc, obs, t):
    a = verify.contingency(fc, obs, t)
    b = verify.contingency(obs, fc, t)
    assert (a.hits, a.misses, a.false_alarms) == (b.hits, b.false_alarms, b.misses)
    ca, cb = verify.csi(fc, obs, t), verify.csi(obs, fc, t)
    assert (math.isnan(ca) and math.isnan(cb)) or ca == cb


@settings(max_examples=100, deadline=None)
@given(dbz_fields, thresholds)
def test_perfect_forecast(obs, t):
    s = verify.categorical_scores(verify.contingency(obs, obs, t))
    if (obs >= t).any():
        assert s.csi == 1.0 and s.pod == 1.0 and s.far == 0.0
    else:
        assert math.isnan(s.csi)
    assert verify.mse(obs, obs) == 0.0 and verify.gdl(obs, obs) == 0.0


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (5, 3, 6, 6), elements=st.floats(-10, 70, width=32)),
       arrays(np.float32, (5, 3, 6, 6), elements=st.floats(-10, 70, width=32)),
       st.integers(1, 4))
def test_pooling_is_invariant_to_batching(fc, obs, cut):
    whole = verify.ScoreAccumulator((30, 40), n_leads=3)
    whole.update(fc, obs)
    parts = verify.ScoreAccumulator((30, 40), n_leads=3)
    parts.update(fc[:cut], obs[:cut])
    parts.update(fc[cut:], obs[cut:])
    # counts are integers and float sums exact: batching changes no score, to the last bit
    assert json.dumps(whole.result().to_dict()) == json.dumps(parts.result().to_dict())


def test_forecasts_are_finite_where_inputs_are_valid_and_nan_where_not(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden=8, kernel_size=3, patch_size=2)
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "m.safetensors", model, cfg, {})
    method = ModelForecaster.from_checkpoint(path, device="cpu")
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 70, (5, 30, 26)).astype(np.float32)
    x[:, :8, :5] = np.nan  # outside radar coverage
    x[2, 20, 20] = np.nan  # a single missing pixel in an earlier frame only
    for m in (method, Persistence()):
        fc = m(x, 4)
        assert fc.shape == (4, 30, 26)
        assert np.isnan(fc[:, :8, :5]).all()
        valid = ~np.isnan(x[-1])
        assert np.isfinite(fc[:, valid]).all()
        assert fc[:, valid].min() >= -10 and fc[:, valid].max() <= 70
