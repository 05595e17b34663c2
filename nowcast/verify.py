"""Forecast verification scores (DESIGN.md, "Scores"), for numpy arrays and torch tensors alike.

Every function takes forecasts and observations in dBZ with the same shape, frames on the last two axes.

Missing data
------------
- Contingency counts, MSE and MAE: a pixel counts only when both the observation and the forecast are
  finite. NaN observations are no data (DESIGN.md); a NaN forecast (a method keeps no-data regions as
  NaN) cannot be scored either, so it is excluded the same way rather than counted as "no event".
- GDL: a neighbour difference counts only when both of its pixels are finite in both fields.
- SSIM: the windowed statistics need a full frame, so NaN is filled with the floor (-10 dBZ, i.e. 0 on
  the [0, 1] scale) in both fields; a frame whose observation is all NaN is left out.

Frames whose observation has no finite pixel at all are left out of every score and counted.

Pooling
-------
Contingency counts, squared and absolute errors are summed over pixels (then over windows and lead
times) before the ratio is taken, so pooled scores do not depend on how the data were batched.
GDL and SSIM are per-frame means, averaged over frames.
A ratio with a zero denominator is NaN, never 0 and never an exception.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy import ndimage

from .units import dbz_to_unit

DEFAULT_THRESHOLDS = (30.0, 40.0, 50.0)

# SSIM constants (Wang et al. 2004, scikit-image defaults with gaussian_weights=True)
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11-pixel window
SSIM_WIN = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1
SSIM_K1 = 0.01
SSIM_K2 = 0.03

_CHUNK_PIXELS = 4_000_000

COUNT_KEYS = ("hits", "misses", "false_alarms", "correct_negatives")


# ---------------------------------------------------------------------------------------------
# helpers


def to_numpy(x) -> np.ndarray:
    """numpy array from a numpy array, a torch tensor (any device) or anything array-like."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


def _pair(forecast, observed) -> tuple[np.ndarray, np.ndarray]:
    fc, obs = to_numpy(forecast), to_numpy(observed)
    if fc.shape != obs.shape:
        raise ValueError(f"forecast shape {fc.shape} differs from observation shape {obs.shape}")
    if fc.ndim < 2:
        raise ValueError(f"expected frames (..., H, W), got shape {fc.shape}")
    return fc, obs


def normalize_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    """Thresholds as sorted unique floats (any order accepted)."""
    try:
        values = sorted({float(t) for t in thresholds})
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must be numbers, got {thresholds!r}") from None
    if not values or any(not math.isfinite(t) for t in values):
        raise ValueError(f"thresholds must be finite numbers, got {thresholds!r}")
    return tuple(values)


def threshold_key(t: float) -> str:
    """JSON key for a threshold: 30.0 -> '30', 32.5 -> '32.5'."""
    return f"{float(t):g}"


def _ratio(num, den):
    """num / den elementwise, NaN where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out if out.ndim else float(out)


def _to_unit(x: np.ndarray) -> np.ndarray:
    """dBZ -> [0, 1] in float64; NaN (and +-inf, equally no data) stay NaN: the scores decide."""
    return dbz_to_unit(np.where(np.isfinite(x), x, np.nan), no_data=np.nan, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# categorical scores


def contingency(forecast, observed, threshold: float) -> dict[str, int]:
    """Hits, misses, false alarms and correct negatives at `threshold` dBZ (event: value >= threshold).

    Pixels where the observation or the forecast is NaN are left out.
    """
    fc, obs = _pair(forecast, observed)
    # compare in float64 so a threshold such as 32.3 is not rounded to the data's float32
    fc, obs = fc.astype(np.float64, copy=False), obs.astype(np.float64, copy=False)
    valid = np.isfinite(obs) & np.isfinite(fc)
    return dict(zip(COUNT_KEYS, _count_events(fc, obs, valid, threshold)))


def _count_events(fc: np.ndarray, obs: np.ndarray, valid: np.ndarray, threshold: float) -> tuple[int, ...]:
    """(hits, misses, false alarms, correct negatives) over the `valid` pixels; event: value >= threshold."""
    f_yes = (fc >= threshold) & valid
    o_yes = (obs >= threshold) & valid
    hits = int(np.count_nonzero(f_yes & o_yes))
    misses = int(np.count_nonzero(o_yes)) - hits
    false_alarms = int(np.count_nonzero(f_yes)) - hits
    return hits, misses, false_alarms, int(np.count_nonzero(valid)) - hits - misses - false_alarms


def categorical_scores(counts) -> dict[str, float]:
    """CSI, POD, FAR and frequency bias from a counts dict (NaN where a denominator is zero)."""
    h, m, f = (np.asarray(counts[k], dtype=np.float64) for k in ("hits", "misses", "false_alarms"))
    return {
        "csi": _ratio(h, h + m + f),
        "pod": _ratio(h, h + m),
        "far": _ratio(f, h + f),
        "bias": _ratio(h + f, h + m),
    }


def csi(forecast, observed, threshold: float) -> float:
    return categorical_scores(contingency(forecast, observed, threshold))["csi"]


def pod(forecast, observed, threshold: float) -> float:
    return categorical_scores(contingency(forecast, observed, threshold))["pod"]


def far(forecast, observed, threshold: float) -> float:
    return categorical_scores(contingency(forecast, observed, threshold))["far"]


def frequency_bias(forecast, observed, threshold: float) -> float:
    return categorical_scores(contingency(forecast, observed, threshold))["bias"]


# ---------------------------------------------------------------------------------------------
# continuous scores


def mse(forecast, observed) -> float:
    """Mean squared error in dBZ^2 over pixels where both fields are finite."""
    fc, obs = _pair(forecast, observed)
    d = (fc.astype(np.float64) - obs.astype(np.float64))
    d = d[np.isfinite(d)]
    return _ratio(np.sum(d * d), d.size)


def mae(forecast, observed) -> float:
    """Mean absolute error in dBZ over pixels where both fields are finite."""
    fc, obs = _pair(forecast, observed)
    d = (fc.astype(np.float64) - obs.astype(np.float64))
    d = d[np.isfinite(d)]
    return _ratio(np.sum(np.abs(d)), d.size)


def gdl_frames(forecast, observed) -> np.ndarray:
    """GDL (alpha = 1) of each frame, shape (...,); NaN for frames without valid differences.

    Frames are clipped to [-10, 70] dBZ and scaled to [0, 1]. Per frame:
    mean over vertical neighbour pairs of ||dy fc| - |dy obs|| + mean over horizontal pairs of
    ||dx fc| - |dx obs||, each mean over the pairs whose two pixels are finite in both fields.
    """
    fc, obs = _pair(forecast, observed)
    fc, obs = _to_unit(fc), _to_unit(obs)
    terms = []
    for axis in (-2, -1):
        g = np.abs(np.abs(np.diff(fc, axis=axis)) - np.abs(np.diff(obs, axis=axis)))
        ok = np.isfinite(g)  # NaN anywhere among the four pixels makes g NaN
        n = ok.sum(axis=(-2, -1))
        s = np.where(ok, g, 0.0).sum(axis=(-2, -1))
        terms.append(_ratio(s, n))
    return np.asarray(terms[0]) + np.asarray(terms[1])


def gdl(forecast, observed) -> float:
    """GDL averaged over frames (frames without valid differences left out)."""
    return _nanmean(gdl_frames(forecast, observed))


def _filter(x: np.ndarray) -> np.ndarray:
    # the same Gaussian (and 'reflect' border) skimage uses, filtering only the two frame axes
    sigma = (0.0,) * (x.ndim - 2) + (SSIM_SIGMA, SSIM_SIGMA)
    return ndimage.gaussian_filter(x, sigma=sigma, truncate=SSIM_TRUNCATE, mode="reflect")


def ssim_frames(forecast, observed) -> np.ndarray:
    """SSIM of each frame, shape (...,), as skimage's structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1.0) on the [0, 1] scaled frames.

    NaN pixels are filled with the floor first; frames with an all-NaN observation, and frames smaller
    than the 11-pixel window, give NaN.
    """
    fc, obs = _pair(forecast, observed)
    h, w = fc.shape[-2:]
    lead_shape = fc.shape[:-2]
    empty = ~np.isfinite(obs).any(axis=(-2, -1))
    if h < SSIM_WIN or w < SSIM_WIN:
        return np.full(lead_shape, np.nan)
    x = np.nan_to_num(_to_unit(fc), nan=0.0)
    y = np.nan_to_num(_to_unit(obs), nan=0.0)
    ux, uy = _filter(x), _filter(y)
    vx = _filter(x * x) - ux * ux
    vy = _filter(y * y) - uy * uy
    vxy = _filter(x * y) - ux * uy
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # data range 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (SSIM_WIN - 1) // 2  # skimage averages only where the window lies inside the frame
    out = s[..., pad:h - pad, pad:w - pad].mean(axis=(-2, -1), dtype=np.float64)
    return np.where(empty, np.nan, out)


def ssim(forecast, observed) -> float:
    """SSIM averaged over frames (NaN frames left out)."""
    return _nanmean(ssim_frames(forecast, observed))


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


# ---------------------------------------------------------------------------------------------
# accumulation over an archive


class ScoreAccumulator:
    """Running sums of every score, per lead time, in constant memory.

    update() takes forecasts and observations shaped (B, n_leads, H, W) or (n_leads, H, W) in dBZ;
    result() gives per-lead and pooled scores; merge() adds another accumulator's sums.
    """

    def __init__(self, thresholds: Iterable[float] = DEFAULT_THRESHOLDS, n_leads: int = 10):
        self.thresholds = normalize_thresholds(thresholds)
        self.n_leads = int(n_leads)
        if self.n_leads < 1:
            raise ValueError("n_leads must be at least 1")
        L, K = self.n_leads, len(self.thresholds)
        self.counts = np.zeros((K, L, 4), dtype=np.int64)  # hits, misses, false alarms, correct negatives
        self.valid_pixels = np.zeros(L, dtype=np.int64)
        self.nan_observation_pixels = np.zeros(L, dtype=np.int64)
        self.nan_forecast_pixels = np.zeros(L, dtype=np.int64)  # among pixels with an observation
        self.sq_err = np.zeros(L)
        self.abs_err = np.zeros(L)
        self.gdl_sum = np.zeros(L)
        self.gdl_frames = np.zeros(L, dtype=np.int64)
        self.ssim_sum = np.zeros(L)
        self.ssim_frames = np.zeros(L, dtype=np.int64)
        self.frames = np.zeros(L, dtype=np.int64)
        self.empty_frames = np.zeros(L, dtype=np.int64)  # observation all NaN: left out

    def update(self, forecast, observed) -> None:
        fc, obs = _pair(forecast, observed)
        if fc.ndim == 3:
            fc, obs = fc[None], obs[None]
        if fc.ndim != 4 or fc.shape[1] != self.n_leads:
            raise ValueError(
                f"expected (B, {self.n_leads}, H, W) or ({self.n_leads}, H, W), got {tuple(fc.shape)}"
            )
        for lead in range(self.n_leads):  # one lead at a time keeps the float64 copies small
            f = fc[:, lead].astype(np.float64)
            o = obs[:, lead].astype(np.float64)
            obs_ok = np.isfinite(o)
            valid = obs_ok & np.isfinite(f)
            n_valid = int(np.count_nonzero(valid))
            self.valid_pixels[lead] += n_valid
            self.nan_observation_pixels[lead] += o.size - int(np.count_nonzero(obs_ok))
            self.nan_forecast_pixels[lead] += int(np.count_nonzero(obs_ok)) - n_valid
            for k, t in enumerate(self.thresholds):
                self.counts[k, lead] += _count_events(f, o, valid, t)
            d = (f - o)[valid]
            self.sq_err[lead] += float(np.dot(d, d))
            self.abs_err[lead] += float(np.abs(d).sum())
            self.frames[lead] += f.shape[0]
            self.empty_frames[lead] += int(np.count_nonzero(~obs_ok.any(axis=(-2, -1))))
            # frames in chunks of a few million pixels: SSIM holds about ten full-size temporaries
            chunk = max(1, _CHUNK_PIXELS // (f.shape[-2] * f.shape[-1]))
            gdl_v = np.concatenate([gdl_frames(f[i:i + chunk], o[i:i + chunk]) for i in range(0, len(f), chunk)])
            ssim_v = np.concatenate([ssim_frames(f[i:i + chunk], o[i:i + chunk]) for i in range(0, len(f), chunk)])
            for values, total, n in ((gdl_v, self.gdl_sum, self.gdl_frames),
                                     (ssim_v, self.ssim_sum, self.ssim_frames)):
                ok = np.isfinite(values)
                total[lead] += float(values[ok].sum())
                n[lead] += int(ok.sum())

    def merge(self, other: "ScoreAccumulator") -> "ScoreAccumulator":
        """Add another accumulator's sums into this one (same thresholds and leads); returns self."""
        if other.thresholds != self.thresholds or other.n_leads != self.n_leads:
            raise ValueError("can only merge accumulators with the same thresholds and lead count")
        for name, value in vars(other).items():
            if isinstance(value, np.ndarray):
                getattr(self, name).__iadd__(value)
        return self

    def result(self) -> dict:
        """Scores per lead and pooled (sums over leads before the ratio); NaN where undefined."""
        out: dict = {}
        keys = [threshold_key(t) for t in self.thresholds]
        per_lead = {name: {} for name in ("csi", "pod", "far", "bias")}
        pooled = {name: {} for name in ("csi", "pod", "far", "bias")}
        counts, counts_per_lead = {}, {}
        for k, key in enumerate(keys):
            lead_c = {c: self.counts[k, :, i] for i, c in enumerate(COUNT_KEYS)}
            tot_c = {c: int(self.counts[k, :, i].sum()) for i, c in enumerate(COUNT_KEYS)}
            lead_s = categorical_scores(lead_c)
            tot_s = categorical_scores(tot_c)
            for name in per_lead:
                per_lead[name][key] = [float(v) for v in lead_s[name]]
                pooled[name][key] = float(tot_s[name])
            counts[key] = tot_c
            counts_per_lead[key] = {c: [int(v) for v in lead_c[c]] for c in COUNT_KEYS}
        for name in ("csi", "pod", "far", "bias"):
            out[name] = pooled[name]
            out[f"{name}_per_lead"] = per_lead[name]
        n_valid = self.valid_pixels
        out["gdl"] = _ratio(self.gdl_sum.sum(), self.gdl_frames.sum())
        out["mse"] = _ratio(self.sq_err.sum(), n_valid.sum())
        out["mae"] = _ratio(self.abs_err.sum(), n_valid.sum())
        out["ssim"] = _ratio(self.ssim_sum.sum(), self.ssim_frames.sum())
        out["gdl_per_lead"] = [float(v) for v in np.atleast_1d(_ratio(self.gdl_sum, self.gdl_frames))]
        out["mse_per_lead"] = [float(v) for v in np.atleast_1d(_ratio(self.sq_err, n_valid))]
        out["mae_per_lead"] = [float(v) for v in np.atleast_1d(_ratio(self.abs_err, n_valid))]
        out["ssim_per_lead"] = [float(v) for v in np.atleast_1d(_ratio(self.ssim_sum, self.ssim_frames))]
        out["counts"] = counts
        out["counts_per_lead"] = counts_per_lead
        out["valid_pixels"] = int(n_valid.sum())
        out["nan_observation_pixels"] = int(self.nan_observation_pixels.sum())
        out["nan_forecast_pixels"] = int(self.nan_forecast_pixels.sum())
        out["frames"] = int(self.frames.sum())
        out["empty_observation_frames"] = int(self.empty_frames.sum())
        return out
