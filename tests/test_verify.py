"""Scores: agreement with pysteps (CSI/POD/FAR) and scikit-image (SSIM), hand-checked GDL, NaN rules,
pooling and the accumulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from nowcast import verify
from nowcast.units import DBZ_FLOOR, dbz_to_unit
from radar_files import SHARED_RADAR as RADAR
from radar_files import needs_shared_radar


def exact(scores) -> str:
    """Every number of a result, NaN included, to the last bit (repr of floats is exact)."""
    return json.dumps(scores.to_dict())


def unit_to_dbz64(u):
    return -10.0 + 80.0 * np.asarray(u, dtype=np.float64)


def random_fields(seed, shape=(4, 48, 56)):
    """Random dBZ on 0.5 dBZ steps, so values land exactly on the thresholds now and then."""
    rng = np.random.default_rng(seed)
    obs = np.round(rng.uniform(-15, 65, shape) * 2) / 2
    fc = np.round((obs + rng.normal(0, 8, shape)) * 2) / 2
    return fc, obs


def smooth_fields(seed, shape=(3, 64, 80)):
    """Radar-like: smooth cells with a no-echo background, 0.5 dBZ steps, forecast displaced."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(shape[0],) + (shape[1] + 8, shape[2] + 8)), (0, 4, 4))
    field = np.clip(noise / noise.std() * 22 + 15, -10, 62)
    field = np.round(field * 2) / 2
    obs = field[:, 4:-4, 4:-4]
    fc = field[:, 6:shape[1] + 6, 2:shape[2] + 2]
    return fc, obs


# ---------------------------------------------------------------------------------------------
# categorical scores vs pysteps


def pysteps_scores(fc, obs, threshold):
    from pysteps.verification.detcatscores import det_cat_fct

    # pysteps' event is value > thr; ours is value >= T, i.e. value > the next float below T
    return det_cat_fct(fc, obs, np.nextafter(float(threshold), -np.inf), scores=["CSI", "POD", "FAR", "BIAS"])


@pytest.mark.parametrize("make", [random_fields, smooth_fields])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_categorical_scores_match_pysteps(make, seed):
    fc, obs = make(seed)
    for t in (30, 40, 50):
        assert np.any(obs == t) or make is smooth_fields  # the >= convention is exercised
        ref = pysteps_scores(fc, obs, t)
        ours = verify.categorical_scores(verify.contingency(fc, obs, t))
        for ours_key, ref_key in (("csi", "CSI"), ("pod", "POD"), ("far", "FAR"), ("bias", "BIAS")):
            assert getattr(ours, ours_key) == pytest.approx(ref[ref_key], abs=1e-12, nan_ok=True)
        assert verify.csi(fc, obs, t) == pytest.approx(ref["CSI"], abs=1e-12, nan_ok=True)
        assert verify.pod(fc, obs, t) == pytest.approx(ref["POD"], abs=1e-12, nan_ok=True)
        assert verify.far(fc, obs, t) == pytest.approx(ref["FAR"], abs=1e-12, nan_ok=True)
        assert verify.frequency_bias(fc, obs, t) == pytest.approx(ref["BIAS"], abs=1e-12, nan_ok=True)


def test_threshold_is_inclusive():
    obs = np.array([[30.0, 29.5]])
    fc = np.array([[30.0, 30.0]])
    c = verify.contingency(fc, obs, 30)
    assert c == verify.Counts(hits=1, misses=0, false_alarms=1, correct_negatives=0)


def test_accumulator_matches_pysteps_per_lead():
    fc, obs = random_fields(5, shape=(2, 3, 32, 32))  # (B, leads, H, W)
    acc = verify.ScoreAccumulator((30, 40), n_leads=3)
    acc.update(fc, obs)
    r = acc.result()
    for lead in range(3):
        ref = pysteps_scores(fc[:, lead], obs[:, lead], 40)
        assert r.at(40).per_lead[lead].csi == pytest.approx(ref["CSI"], abs=1e-12)
        assert r.lead_values("far", 40)[lead] == pytest.approx(ref["FAR"], abs=1e-12)
    ref = pysteps_scores(fc, obs, 30)
    assert r.at(30).csi == pytest.approx(ref["CSI"], abs=1e-12)
    assert r.at("30").pod == pytest.approx(ref["POD"], abs=1e-12)


# ---------------------------------------------------------------------------------------------
# NaN rules, tested on their own (pysteps would count NaN as non-events)


def test_nan_pixels_are_left_out_hand_counted():
    nan = np.nan
    obs = np.array([[35.0, 35.0, 20.0, nan],
                    [nan, 20.0, 35.0, 35.0]])
    fc = np.array([[35.0, 20.0, 35.0, 35.0],
                   [20.0, 20.0, nan, 40.0]])
    # valid (both finite): (0,0) hit, (0,1) miss, (0,2) false alarm, (1,1) correct negative, (1,3) hit
    # left out: (0,3) and (1,0) obs NaN; (1,2) forecast NaN
    c = verify.contingency(fc, obs, 30)
    assert c == verify.Counts(hits=2, misses=1, false_alarms=1, correct_negatives=1)
    s = verify.categorical_scores(c)
    assert s.csi == pytest.approx(2 / 4)
    assert s.pod == pytest.approx(2 / 3)
    assert s.far == pytest.approx(1 / 3)
    assert s.bias == pytest.approx(3 / 3)
    # MSE / MAE on the five valid pixels: errors 0, -15, 15, 0, 5
    assert verify.mse(fc, obs) == pytest.approx((0 + 225 + 225 + 0 + 25) / 5)
    assert verify.mae(fc, obs) == pytest.approx((0 + 15 + 15 + 0 + 5) / 5)

    acc = verify.ScoreAccumulator([30], n_leads=1)
    acc.update(fc[None], obs[None])
    r = acc.result()
    assert r.at(30).counts == c
    assert r.valid_pixels == 5
    assert r.nan_observation_pixels == 2
    assert r.nan_forecast_pixels == 1


def test_all_nan_observations_excluded_and_counted():
    fc = np.full((2, 16, 16), 40.0)
    obs = np.full((2, 16, 16), np.nan)
    obs[1] = 45.0  # lead 1 is observed, lead 0 is not
    acc = verify.ScoreAccumulator((30, 40, 50), n_leads=2)
    acc.update(fc, obs)
    r = acc.result()
    assert r.nan_observation_pixels == 256
    assert r.empty_observation_frames == 1
    assert r.frames == 2
    assert math.isnan(r.at(30).per_lead[0].csi)
    assert r.at(30).per_lead[1].csi == 1.0
    assert r.at(30).csi == 1.0  # the empty lead adds nothing to the pooled counts
    assert math.isnan(r.per_lead[0].mse) and r.per_lead[1].mse == pytest.approx(25.0)
    assert math.isnan(r.per_lead[0].ssim) and math.isnan(r.per_lead[0].gdl)
    assert np.isfinite(r.ssim) and np.isfinite(r.gdl)
    assert math.isnan(verify.ssim(fc[:1], obs[:1]))
    assert math.isnan(verify.mse(fc[:1], obs[:1]))


def test_no_events_give_nan_not_zero_and_null_in_json():
    fc = np.full((3, 12, 12), 5.0)
    obs = np.full((3, 12, 12), 10.0)
    s = verify.categorical_scores(verify.contingency(fc, obs, 30))
    assert all(math.isnan(getattr(s, k)) for k in ("csi", "pod", "far", "bias"))
    acc = verify.ScoreAccumulator((30,), n_leads=3)
    acc.update(fc, obs)
    r = acc.result()
    assert math.isnan(r.at(30).csi)
    assert r.at(30).counts.correct_negatives == 3 * 144
    from nowcast.evaluate import to_json

    text = to_json(r)
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert loaded["csi"]["30"] is None and loaded["csi_per_lead"]["30"] == [None] * 3


def test_forecast_events_without_observed_events():
    fc = np.full((1, 12, 12), 45.0)
    obs = np.full((1, 12, 12), 10.0)
    s = verify.categorical_scores(verify.contingency(fc, obs, 30))
    assert s.csi == 0.0 and s.far == 1.0
    assert math.isnan(s.pod) and math.isnan(s.bias)


def test_thresholds_any_order_reported_sorted():
    fc, obs = random_fields(3, shape=(2, 32, 32))
    a = verify.ScoreAccumulator([50, 30, 40, 30], n_leads=2)
    b = verify.ScoreAccumulator([30, 40, 50], n_leads=2)
    a.update(fc, obs)
    b.update(fc, obs)
    assert a.thresholds == (30.0, 40.0, 50.0)
    ra, rb = a.result(), b.result()
    assert ra.thresholds == (30.0, 40.0, 50.0) and list(ra.to_dict()["csi"]) == ["30", "40", "50"]
    assert json.dumps(ra.to_dict()) == json.dumps(rb.to_dict())
    c = verify.ScoreAccumulator([32.5], n_leads=2)
    assert list(c.result().to_dict()["csi"]) == ["32.5"] and c.result().at(32.5).key == "32.5"
    with pytest.raises(ValueError):
        c.result().at(30)


# ---------------------------------------------------------------------------------------------
# pooling


def test_pooled_csi_over_batches_equals_csi_over_concatenation():
    fc1, obs1 = random_fields(10, shape=(3, 10, 24, 24))
    fc2, obs2 = smooth_fields(11, shape=(20, 24, 24))
    fc2, obs2 = fc2.reshape(2, 10, 24, 24), obs2.reshape(2, 10, 24, 24)
    fc2[0, :, :4] = np.nan
    obs2[1, 2, 5:9] = np.nan

    batched = verify.ScoreAccumulator(n_leads=10)
    batched.update(fc1, obs1)
    batched.update(fc2, obs2)
    whole = verify.ScoreAccumulator(n_leads=10)
    whole.update(np.concatenate([fc1, fc2]), np.concatenate([obs1, obs2]))
    rb, rw = batched.result(), whole.result()
    for t in ("30", "40", "50"):
        # pooled over everything = the ratio of the summed counts, not a mean of per-batch CSI
        c = verify.contingency(np.concatenate([fc1, fc2]), np.concatenate([obs1, obs2]), float(t))
        assert rw.at(t).counts == c
        assert rw.at(t).csi == verify.categorical_scores(c).csi
    # counts are integers and float sums exact: batching changes nothing, to the last bit
    assert exact(rb) == exact(rw)

    # merge() of two accumulators = one accumulator that saw both batches, in either order
    def filled(fc, obs):
        return verify.ScoreAccumulator(n_leads=10).update(fc, obs)

    assert exact(filled(fc1, obs1).merge(filled(fc2, obs2)).result()) == exact(rw)
    assert exact(filled(fc2, obs2).merge(filled(fc1, obs1)).result()) == exact(rw)
    m1 = filled(fc1, obs1)
    with pytest.raises(ValueError):
        m1.merge(verify.ScoreAccumulator((30,), n_leads=10))
    with pytest.raises(ValueError):
        m1.merge(verify.ScoreAccumulator(n_leads=9))
    with pytest.raises(ValueError):
        m1.merge(verify.ErrorAccumulator(n_leads=10))


def test_exact_sums_are_order_free_and_rounded_once():
    from fractions import Fraction

    terms = [1e16, 1.0, -1e16, 3.0, 1e-300, 0.1, 0.2, -0.3, 2.5e-308]
    forward, backward, halves = verify.ExactSums(1), verify.ExactSums(1), verify.ExactSums(1)
    forward.add(0, terms)
    backward.add(0, terms[::-1])
    halves.add(0, terms[:4])
    rest = verify.ExactSums(1)
    rest.add(0, terms[4:])
    halves.merge(rest)
    exact_mean = float(sum(Fraction(t) for t in terms) / 7)  # the true mean, rounded once
    assert forward.mean(7) == backward.mean(7) == halves.mean(7) == exact_mean
    assert sum(terms) / 7 != exact_mean  # a float running sum would have lost the 1.0 and the 3.0
    assert math.isnan(forward.mean(0))
    forward.add(0, [np.inf])
    assert forward.mean(3) == np.inf
    forward.add(0, [-np.inf])
    assert math.isnan(forward.mean(3))
    big = verify.ExactSums(1)
    big.add(0, [1.7e308, 1.7e308])
    assert big.mean(1) == np.inf  # overflows like a float sum, without an exception


def test_accumulators_pickle_and_merge_across_processes_unchanged():
    import pickle

    fc, obs = (a.reshape(6, 3, 24, 24) for a in smooth_fields(8, shape=(18, 24, 24)))
    fc[1, :, :5] = np.nan
    parts = [pickle.loads(pickle.dumps(verify.ScoreAccumulator((20, 30), n_leads=3).update(fc[i:i + 2], obs[i:i + 2])))
             for i in range(0, 6, 2)]
    whole = verify.ScoreAccumulator((20, 30), n_leads=3).update(fc, obs)
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert exact(merged.result()) == exact(whole.result())
    assert merged.result().frames == 18


def test_one_shot_scores_are_the_accumulator_of_one_lead():
    fc, obs = random_fields(9, shape=(3, 2, 20, 20))
    fc[0, 0, :3] = np.nan
    acc = verify.ScoreAccumulator([30], n_leads=1).update(fc.reshape(-1, 1, 20, 20), obs.reshape(-1, 1, 20, 20))
    r = acc.result()
    assert verify.contingency(fc, obs, 30) == r.at(30).counts
    assert verify.csi(fc, obs, 30) == r.at(30).csi
    for name in ("mse", "mae", "gdl", "ssim"):
        assert getattr(verify, name)(fc, obs) == getattr(r, name)
    assert r.lead_values("mse") == (r.mse,)
    with pytest.raises(ValueError):
        r.lead_values("csi")  # a categorical score needs its threshold


def test_accumulator_accepts_single_window_and_rejects_wrong_leads():
    fc, obs = random_fields(4, shape=(10, 16, 16))
    acc = verify.ScoreAccumulator(n_leads=10)
    acc.update(fc, obs)
    assert acc.result().frames == 10
    with pytest.raises(ValueError):
        acc.update(fc[:5], obs[:5])
    with pytest.raises(ValueError):
        acc.update(fc, obs[:, :8])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-5, 60, allow_nan=False), st.floats(0, 0.5))
def test_counts_partition_valid_pixels(seed, threshold, nan_fraction):
    rng = np.random.default_rng(seed)
    obs = np.round(rng.uniform(-10, 65, (2, 9, 7)) * 2) / 2
    fc = np.round(rng.uniform(-10, 65, (2, 9, 7)) * 2) / 2
    obs[rng.random(obs.shape) < nan_fraction] = np.nan
    c = verify.contingency(fc, obs, threshold)
    assert all(v >= 0 for v in c.as_tuple())
    assert c.total == np.isfinite(obs).sum()
    assert c.hits + c.misses == np.sum(obs >= threshold)


# ---------------------------------------------------------------------------------------------
# torch inputs


def test_torch_and_numpy_inputs_agree():
    torch = pytest.importorskip("torch")
    fc, obs = smooth_fields(7, shape=(10, 32, 32))
    fc[0, :3] = np.nan
    a = verify.ScoreAccumulator(n_leads=10)
    a.update(fc, obs)
    b = verify.ScoreAccumulator(n_leads=10)
    b.update(torch.from_numpy(fc), torch.from_numpy(obs).requires_grad_(False))
    assert exact(a.result()) == exact(b.result())
    f32, o32 = torch.from_numpy(fc).float(), torch.from_numpy(obs).float()
    assert verify.csi(f32, o32, 30) == verify.csi(fc.astype(np.float32), obs.astype(np.float32), 30)
    assert verify.ssim(f32, o32) == pytest.approx(verify.ssim(fc, obs), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# SSIM vs scikit-image


def skimage_ssim(fc, obs):
    from skimage.metrics import structural_similarity

    return structural_similarity(dbz_to_unit(fc).astype(np.float64), dbz_to_unit(obs).astype(np.float64),
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)


@pytest.mark.parametrize("make", [random_fields, smooth_fields])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage(make, seed):
    fc, obs = make(seed)
    ours = verify.ssim_frames(fc, obs)
    ref = np.array([skimage_ssim(f, o) for f, o in zip(fc, obs)])
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    assert verify.ssim(fc, obs) == pytest.approx(ref.mean(), abs=1e-6)
    assert verify.ssim(obs, obs) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_skimage_odd_shapes_and_float32():
    rng = np.random.default_rng(3)
    for shape in ((11, 11), (13, 40), (37, 12)):
        obs = rng.uniform(-10, 70, shape).astype(np.float32)
        fc = np.clip(obs + rng.normal(0, 10, shape), -10, 70).astype(np.float32)
        assert verify.ssim(fc, obs) == pytest.approx(skimage_ssim(fc, obs), abs=1e-6)
    assert math.isnan(verify.ssim(np.zeros((10, 30)), np.zeros((10, 30))))  # smaller than the window


def test_ssim_fills_nan_with_floor():
    fc, obs = smooth_fields(4, shape=(1, 40, 40))
    obs = obs.copy()
    obs[0, :10, :15] = np.nan
    fc[0, 30:, 30:] = np.nan
    filled = lambda a: np.nan_to_num(a, nan=DBZ_FLOOR)  # noqa: E731
    assert verify.ssim(fc, obs) == pytest.approx(skimage_ssim(filled(fc[0]), filled(obs[0])), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# GDL, MSE, MAE by hand


def test_gdl_hand_computed_3x3():
    # on the [0, 1] scale (dBZ = -10 + 80 u):
    obs_u = np.array([[0, 0, 0],
                      [0, 1, 0],
                      [0, 0, 0]], dtype=float)
    fc_u = np.array([[0, 0, 0],
                     [0, 0.5, 0.5],
                     [0, 0, 0]], dtype=float)
    # |dy obs| (row i+1 - row i) = [[0,1,0],[0,1,0]];   |dy fc| = [[0,.5,.5],[0,.5,.5]]
    #   ||dy fc|-|dy obs|| = [[0,.5,.5],[0,.5,.5]]: sum 2 over 6 pairs   -> 1/3
    # |dx obs| (col j+1 - col j) = [[0,0],[1,1],[0,0]]; |dx fc| = [[0,0],[.5,0],[0,0]]
    #   ||dx fc|-|dx obs|| = [[0,0],[.5,1],[0,0]]: sum 1.5 over 6 pairs -> 1/4
    # GDL = 1/3 + 1/4 = 7/12
    fc, obs = unit_to_dbz64(fc_u), unit_to_dbz64(obs_u)
    assert verify.gdl(fc, obs) == pytest.approx(7 / 12, abs=1e-12)
    assert verify.gdl(obs, obs) == 0.0
    # values outside [-10, 70] dBZ are clipped first: 90 dBZ counts as 70
    assert verify.gdl(fc, np.where(obs_u == 1, 90.0, obs)) == pytest.approx(7 / 12, abs=1e-12)

    # a NaN observation at (0, 0) removes the vertical pair (0,0)-(1,0) and the horizontal pair
    # (0,0)-(0,1), both of which had difference 0: dy 2/5 + dx 1.5/5 = 0.7
    obs_nan = obs.copy()
    obs_nan[0, 0] = np.nan
    assert verify.gdl(fc, obs_nan) == pytest.approx(0.7, abs=1e-12)

    # averaged over frames: a perfect second frame halves it
    assert verify.gdl(np.stack([fc, obs]), np.stack([obs, obs])) == pytest.approx(7 / 24, abs=1e-12)


def test_mse_mae_hand_computed():
    fc = np.array([[[10.0, 20.0], [30.0, 40.0]]])
    obs = np.array([[[12.0, 20.0], [27.0, np.nan]]])
    assert verify.mse(fc, obs) == pytest.approx((4 + 0 + 9) / 3)
    assert verify.mae(fc, obs) == pytest.approx((2 + 0 + 3) / 3)


# ---------------------------------------------------------------------------------------------
# real data (optional)


@needs_shared_radar(RADAR / "fmi_dbz.nc")
def test_real_radar_frame_matches_pysteps():
    import xarray as xr

    with xr.open_dataset(RADAR / "fmi_dbz.nc") as ds:
        refl = ds["reflectivity"].isel(time=[10, 13], y=slice(None, None, 3), x=slice(None, None, 3)).values
    fc, obs = refl[0].astype(np.float64), refl[1].astype(np.float64)
    assert np.isnan(obs).any()  # outside coverage
    valid = np.isfinite(fc) & np.isfinite(obs)
    for t in (10, 20, 30):  # thresholds this data actually reaches
        ours = verify.categorical_scores(verify.contingency(fc, obs, t))  # NaN left out by us
        ref = pysteps_scores(fc[valid], obs[valid], t)  # pysteps only sees valid pixels
        for k, rk in (("csi", "CSI"), ("pod", "POD"), ("far", "FAR")):
            assert getattr(ours, k) == pytest.approx(ref[rk], abs=1e-12)
