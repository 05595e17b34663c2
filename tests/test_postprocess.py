"""Post-processing: probability matching against pysteps, lead smoothing checked by hand."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from scipy import ndimage

from nowcast.postprocess import lead_smoothing, probability_match
from nowcast.units import DBZ_FLOOR

with contextlib.redirect_stdout(io.StringIO()):
    from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf


def echoes(h=48, w=56, wet_fraction=0.4, peak=55.0, seed=0):
    """Smooth random echoes in dBZ, the rest at the floor."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(h, w)), 2.5)
    field = (field - field.min()) / (field.max() - field.min()) * (peak + 10.0) - 10.0
    return np.where(field >= np.quantile(field, 1 - wet_fraction), field, DBZ_FLOOR).astype(np.float32)


def pysteps_match(frame, reference):
    return nonparam_match_empirical_cdf(frame.astype(np.float64), reference.astype(np.float64)).astype(np.float32)


# ------------------------------------------------------------------------------- probability matching


@pytest.mark.parametrize("forecast_wet, reference_wet", [(0.6, 0.3), (0.3, 0.6), (0.4, 0.4)])
def test_probability_match_equals_pysteps_without_nan(forecast_wet, reference_wet):
    # a weak, wide forecast and a strong reference, and the other way round (wet fractions differ)
    forecast = np.stack([echoes(wet_fraction=forecast_wet, peak=35.0, seed=s) for s in (1, 2, 3)])
    reference = echoes(wet_fraction=reference_wet, peak=55.0, seed=0)
    matched = probability_match(forecast, reference)
    assert matched.shape == forecast.shape and matched.dtype == np.float32
    for k in range(3):
        np.testing.assert_array_equal(matched[k], pysteps_match(forecast[k], reference))


def test_probability_match_of_a_frame_to_itself_is_the_identity():
    frame = echoes()
    np.testing.assert_array_equal(probability_match(frame, frame), frame)


def test_probability_match_keeps_the_ranking_and_takes_the_reference_values():
    forecast = echoes(peak=30.0, seed=1)
    reference = echoes(peak=60.0, seed=2)
    matched = probability_match(forecast, reference)
    # monotone in the forecast's values: sorted by forecast, then (among tied forecast values, which take tied
    # ranks in argsort's order as pysteps does) by matched value, the matched values never decrease
    order = np.lexsort((matched.ravel(), forecast.ravel()))
    assert np.all(np.diff(matched.ravel()[order]) >= 0)
    assert matched.max() == reference.max()


def test_probability_match_uses_only_pixels_where_both_have_data():
    forecast = echoes(wet_fraction=0.5, peak=35.0, seed=1)
    reference = echoes(wet_fraction=0.4, seed=0)
    forecast[:, :6] = np.nan  # e.g. advected in from beyond the grid
    reference[40:, :] = np.nan  # e.g. beyond the radar's range
    matched = probability_match(forecast, reference)
    assert np.array_equal(np.isnan(matched), np.isnan(forecast))
    both = np.isfinite(forecast) & np.isfinite(reference)
    np.testing.assert_array_equal(matched[both], pysteps_match(forecast[both], reference[both]))
    # pixels with a forecast but no reference follow the same monotone mapping
    only_fc = np.isfinite(forecast) & ~both
    assert matched[only_fc].min() >= DBZ_FLOOR and matched[only_fc].max() <= np.nanmax(reference)
    lower = forecast[only_fc] <= np.nanmin(forecast[both])
    assert np.all(matched[only_fc][lower] == DBZ_FLOOR)


def test_probability_match_without_common_pixels_changes_nothing():
    forecast = echoes()
    reference = np.full_like(forecast, np.nan)
    np.testing.assert_array_equal(probability_match(forecast, reference), forecast)


def test_probability_match_refuses_frames_of_another_size():
    with pytest.raises(ValueError, match="differ in size"):
        probability_match(np.zeros((2, 8, 8)), np.zeros((8, 9)))


# ------------------------------------------------------------------------------------- lead smoothing


def _spike(leads=3, size=61, dbz=40.0):
    frames = np.full((leads, size, size), DBZ_FLOOR, dtype=np.float32)
    frames[:, size // 2, size // 2] = dbz
    return frames


def test_lead_smoothing_spreads_a_spike_with_sigma_growing_by_lead():
    frames = _spike()
    smoothed = lead_smoothing(frames, sigma_per_lead=1.5)
    background = 10 ** (DBZ_FLOOR / 10)
    excess = 10 ** (smoothed.astype(np.float64) / 10) - background
    spike = 10 ** (40.0 / 10) - background
    c = frames.shape[-1] // 2
    offsets = np.arange(frames.shape[-1]) - c
    for k in range(1, 4):
        sigma = 1.5 * k
        # mass in linear Z is kept (the spike is far from the edges) ...
        assert excess[k - 1].sum() == pytest.approx(spike, rel=2e-3)
        # ... and spread with variance sigma^2 along each axis
        var_x = (excess[k - 1].sum(axis=0) * offsets ** 2).sum() / excess[k - 1].sum()
        assert np.sqrt(var_x) == pytest.approx(sigma, rel=0.02)
        # the centre holds the spike times the peak of a 2-D Gaussian, 1 / (2 pi sigma^2)
        assert excess[k - 1, c, c] == pytest.approx(spike / (2 * np.pi * sigma ** 2), rel=0.05)


def test_lead_smoothing_averages_linear_z_not_dbz():
    # two equal halves at 0 and 40 dBZ: the smoothed border is near 37 dBZ (mean of Z), not 20 (mean of dBZ)
    frame = np.zeros((1, 40, 40), dtype=np.float32)
    frame[0, :, 20:] = 40.0
    smoothed = lead_smoothing(frame, sigma_per_lead=3.0)
    middle = 10 * np.log10((10 ** 0 + 10 ** 4) / 2)
    assert smoothed[0, 20, 19:21].mean() == pytest.approx(middle, abs=1.0)


def test_lead_smoothing_skips_no_data():
    # a uniform field with holes stays uniform: holes neither dim nor brighten their neighbours
    frames = np.full((2, 30, 30), 30.0, dtype=np.float32)
    frames[:, 10:15, 10:15] = np.nan
    frames[:, :, :3] = np.nan
    smoothed = lead_smoothing(frames, sigma_per_lead=2.0)
    assert np.array_equal(np.isnan(smoothed), np.isnan(frames))
    np.testing.assert_allclose(smoothed[np.isfinite(smoothed)], 30.0, atol=1e-4)


def test_lead_smoothing_with_zero_sigma_is_the_identity_and_floors():
    frames = _spike()
    frames[0, 0, 0] = -20.0
    out = lead_smoothing(frames, sigma_per_lead=0.0)
    assert out[0, 0, 0] == DBZ_FLOOR
    np.testing.assert_allclose(out[:, 1:], frames[:, 1:], atol=1e-4)


def test_lead_smoothing_refuses_bad_input():
    with pytest.raises(ValueError, match="n_out, H, W"):
        lead_smoothing(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=">= 0"):
        lead_smoothing(np.zeros((1, 8, 8)), sigma_per_lead=-1)
