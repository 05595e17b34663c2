"""Classical post-processing of forecasts: pure numpy, float32 dBZ in and out, NaN = no data.

- probability_match: give each forecast frame the intensity distribution of a reference frame (the last
  observation), keeping the forecast's spatial ranking: what pysteps'
  ``postprocessing.probmatching.nonparam_match_empirical_cdf`` does, restricted to pixels where both
  fields have data.
- lead_smoothing: Gaussian smoothing in linear Z whose width grows with lead, the cheap stand-in for
  the ensemble mean of a stochastic nowcast (small scales lose predictability first).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .units import DBZ_FLOOR, apply_floor


def _match_values(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1-D ``values`` given the empirical distribution of 1-D ``target`` (same size, finite), rank by rank.

    The driest value of ``values`` stays the driest of ``target``; when the target has more wet pixels
    than ``values``, its weakest wet pixels count as dry, so the wet fraction is that of ``values``.
    """
    dry_value, dry_target = values.min(), target.min()
    dry = values == dry_value
    n_wet = np.count_nonzero(~dry)
    target = target.copy()
    if np.count_nonzero(target > dry_target) > n_wet:
        cutoff = np.percentile(target, 100.0 * (1.0 - n_wet / values.size))
        target[target < cutoff] = dry_target
    # the k-th smallest value takes the k-th smallest target (argsort's default order, as pysteps)
    ranks = np.empty(values.size, dtype=np.intp)
    ranks[values.argsort()] = np.arange(values.size)
    matched = np.sort(target)[ranks]
    matched[dry] = dry_target
    return matched


def _match_frame(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One (H, W) frame matched to the reference over the pixels where both have data.

    Forecast pixels without a reference value follow the same monotone mapping (interpolated); NaN stays NaN.
    """
    frame = frame.astype(np.float64)
    both = np.isfinite(frame) & np.isfinite(reference)
    if not both.any():
        return frame
    out = frame.copy()
    out[both] = _match_values(frame[both], reference[both].astype(np.float64))
    only_forecast = np.isfinite(frame) & ~both
    if only_forecast.any():
        order = np.argsort(frame[both], kind="stable")
        out[only_forecast] = np.interp(frame[only_forecast], frame[both][order], out[both][order])
    return out


def probability_match(forecast, reference) -> np.ndarray:
    """Forecast frames (..., H, W) with the intensity distribution of ``reference`` (H, W), in dBZ.

    Each frame keeps where its echoes are and how they rank; their values become those of the
    reference, so smoothing or a network that weakens strong echoes gets their intensity back.
    Pixels without data in the forecast stay NaN.
    """
    forecast = np.asarray(forecast, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if forecast.shape[-2:] != reference.shape:
        raise ValueError(f"forecast frames {forecast.shape[-2:]} and reference {reference.shape} differ in size")
    frames = forecast.reshape(-1, *reference.shape)
    out = np.stack([_match_frame(f, reference) for f in frames]) if len(frames) else frames
    return out.reshape(forecast.shape).astype(np.float32)


def _smooth_linear(z: np.ndarray, sigma: float) -> np.ndarray:
    """NaN-aware Gaussian smoothing of one (H, W) field (normalised convolution); NaN stays NaN."""
    valid = np.isfinite(z)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="constant")
    total = ndimage.gaussian_filter(np.where(valid, z, 0.0), sigma, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, total / weight, np.nan)


def lead_smoothing(forecast, sigma_per_lead: float = 1.0) -> np.ndarray:
    """Forecast (n_out, H, W) dBZ, frame k (1-based lead) smoothed with sigma = k * sigma_per_lead pixels.

    Smoothing averages reflectivity Z = 10^(dBZ/10), not dBZ (averaging logarithms would undercount heavy
    rain); NaN pixels are left out of every average and stay NaN; the result is floored.
    """
    forecast = np.asarray(forecast, dtype=np.float32)
    if forecast.ndim != 3:
        raise ValueError(f"lead_smoothing needs frames shaped (n_out, H, W), got {forecast.shape}")
    if sigma_per_lead < 0:
        raise ValueError(f"sigma_per_lead must be >= 0, got {sigma_per_lead}")
    out = np.empty_like(forecast)
    for k, frame in enumerate(forecast, start=1):
        z = np.power(10.0, frame.astype(np.float64) / 10.0)
        sigma = k * sigma_per_lead
        smooth = _smooth_linear(z, sigma) if sigma > 0 else z
        out[k - 1] = 10.0 * np.log10(np.maximum(smooth, 10.0 ** (DBZ_FLOOR / 10.0)))
    return apply_floor(out).astype(np.float32)
