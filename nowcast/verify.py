"""Forecast verification scores (docs/conventions.md, "Scores"), for numpy arrays and torch tensors alike.

Every function takes forecasts and observations in dBZ with the same shape, frames on the last two axes.

Missing data
------------
- Contingency counts, MSE and MAE: a pixel counts only when both the observation and the forecast are
  finite. NaN observations are no data (docs/conventions.md); a NaN forecast (a method keeps no-data regions
  as NaN) cannot be scored either, so it is excluded the same way rather than counted as "no event".
  ``evaluate`` decides first which pixels a method answers for: by default it turns a missing forecast
  where the radar observed into no echo (``no_echo_where_missing``), as pysteps' scores count a NaN
  forecast, and reports each method's ``Coverage`` beside its scores.
- GDL: a neighbour difference counts only when both of its pixels are finite in both fields.
- SSIM: the windowed statistics need a full frame, so NaN is filled with the floor (-10 dBZ, i.e. 0 on
  the [0, 1] scale) in both fields; a frame whose observation is all NaN is left out.

Frames whose observation has no finite pixel at all are left out of every score and counted.

Pooling
-------
Contingency counts, squared and absolute errors are summed over pixels (then over windows and lead
times) before the ratio is taken. GDL and SSIM are per-frame means, averaged over frames.
A ratio with a zero denominator is NaN, never 0 and never an exception.

One path
--------
Every score, one-shot (``csi``, ``mse``, ``ssim``...) or over an archive, goes through an accumulator:
``update()`` adds frames, ``merge()`` adds another accumulator, ``result()`` gives typed results
(frozen dataclasses with ``to_dict()``). Counts are integers and float sums are kept exactly
(``ExactSums``), one term per frame, so a result does not depend on batching, on the order of updates,
or on how the windows were split between processes and merged: it is the same to the last bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import ndimage

from .units import DBZ_FLOOR, dbz_to_unit

DEFAULT_THRESHOLDS = (30.0, 40.0, 50.0)

# SSIM constants (Wang et al. 2004, scikit-image defaults with gaussian_weights=True)
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11-pixel window
SSIM_WIN = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1
SSIM_K1 = 0.01
SSIM_K2 = 0.03

_CHUNK_PIXELS = 4_000_000

COUNT_KEYS = ("hits", "misses", "false_alarms", "correct_negatives")
CATEGORICAL_SCORES = ("csi", "pod", "far", "bias")
CONTINUOUS_SCORES = ("gdl", "mse", "mae", "ssim")


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


def _div(num, den) -> float:
    """num / den as a float, NaN when den is 0 (integers divide with one correct rounding)."""
    return num / den if den > 0 else float("nan")


def _to_unit(x: np.ndarray) -> np.ndarray:
    """dBZ -> [0, 1] in float64; NaN (and +-inf, equally no data) stay NaN: the scores decide."""
    return dbz_to_unit(np.where(np.isfinite(x), x, np.nan), no_data=np.nan, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# typed results


@dataclass(frozen=True)
class Counts:
    """Contingency counts at one threshold (event: value >= threshold)."""

    hits: int = 0
    misses: int = 0
    false_alarms: int = 0
    correct_negatives: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.hits, self.misses, self.false_alarms, self.correct_negatives)

    @property
    def total(self) -> int:
        return sum(self.as_tuple())

    def scores(self) -> "CategoricalScores":
        return CategoricalScores.from_counts(self)

    def to_dict(self) -> dict[str, int]:
        return dict(zip(COUNT_KEYS, self.as_tuple()))


@dataclass(frozen=True)
class CategoricalScores:
    """CSI, POD, FAR and frequency bias; NaN where a denominator is zero."""

    csi: float
    pod: float
    far: float
    bias: float

    @classmethod
    def from_counts(cls, c: Counts) -> "CategoricalScores":
        h, m, f = c.hits, c.misses, c.false_alarms
        return cls(csi=_div(h, h + m + f), pod=_div(h, h + m), far=_div(f, h + f), bias=_div(h + f, h + m))

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in CATEGORICAL_SCORES}


def pooled_score(name: str) -> property:
    """A score over all leads, read from the ``pooled`` scores (``scores.csi`` for ``scores.pooled.csi``)."""
    return property(lambda self: getattr(self.pooled, name), doc=f"{name}, pooled over leads (float)")


@dataclass(frozen=True)
class ThresholdScores:
    """The contingency scores at one threshold: counts per lead, and scores pooled and per lead."""

    threshold: float
    counts_per_lead: tuple[Counts, ...]

    @property
    def key(self) -> str:
        return threshold_key(self.threshold)

    @property
    def counts(self) -> Counts:
        """Pooled over leads: the counts summed before any ratio is taken."""
        return sum(self.counts_per_lead, Counts())

    @property
    def pooled(self) -> CategoricalScores:
        return self.counts.scores()

    @property
    def per_lead(self) -> tuple[CategoricalScores, ...]:
        return tuple(c.scores() for c in self.counts_per_lead)

    csi = pooled_score("csi")
    pod = pooled_score("pod")
    far = pooled_score("far")
    bias = pooled_score("bias")

    def lead_values(self, name: str) -> tuple[float, ...]:
        """One categorical score ('csi', 'pod', 'far' or 'bias') per lead."""
        if name not in CATEGORICAL_SCORES:
            raise ValueError(f"unknown categorical score {name!r}; known: {', '.join(CATEGORICAL_SCORES)}")
        return tuple(getattr(s, name) for s in self.per_lead)


@dataclass(frozen=True)
class ContinuousScores:
    """GDL, MSE and MAE (dBZ) and SSIM, pooled or of one lead; NaN where nothing could be scored."""

    gdl: float
    mse: float
    mae: float
    ssim: float


@dataclass(frozen=True)
class Scores:
    """Every score of one forecast method (``ScoreAccumulator.result()``)."""

    categorical: tuple[ThresholdScores, ...]  # one per threshold, ascending
    pooled: ContinuousScores  # sums over leads, then the ratio
    per_lead: tuple[ContinuousScores, ...]
    valid_pixels: int
    nan_observation_pixels: int
    nan_forecast_pixels: int
    frames: int
    empty_observation_frames: int

    @property
    def thresholds(self) -> tuple[float, ...]:
        return tuple(t.threshold for t in self.categorical)

    def at(self, threshold) -> ThresholdScores:
        """The contingency scores at `threshold` (a number or its key, e.g. 30 or '30')."""
        key = threshold if isinstance(threshold, str) else threshold_key(threshold)
        for t in self.categorical:
            if t.key == key:
                return t
        raise ValueError(f"no scores at threshold {threshold!r}; thresholds: {[t.key for t in self.categorical]}")

    gdl = pooled_score("gdl")
    mse = pooled_score("mse")
    mae = pooled_score("mae")
    ssim = pooled_score("ssim")

    def lead_values(self, name: str, threshold=None) -> tuple[float, ...]:
        """One score per lead: a continuous score, or a categorical one at `threshold`."""
        if name in CONTINUOUS_SCORES:
            return tuple(getattr(s, name) for s in self.per_lead)
        if threshold is None:
            raise ValueError(f"{name!r} needs a threshold")
        return self.at(threshold).lead_values(name)

    def to_dict(self) -> dict:
        """The JSON layout: {'csi': {T: pooled}, 'csi_per_lead': {T: [...]}, ..., 'gdl', 'gdl_per_lead', ...,
        'counts', 'counts_per_lead', 'valid_pixels', ...} with thresholds keyed as threshold_key()."""
        out: dict = {}
        for name in CATEGORICAL_SCORES:
            out[name] = {t.key: getattr(t.pooled, name) for t in self.categorical}
            out[f"{name}_per_lead"] = {t.key: list(t.lead_values(name)) for t in self.categorical}
        for name in CONTINUOUS_SCORES:
            out[name] = getattr(self.pooled, name)
        for name in CONTINUOUS_SCORES:
            out[f"{name}_per_lead"] = list(self.lead_values(name))
        out["counts"] = {t.key: t.counts.to_dict() for t in self.categorical}
        out["counts_per_lead"] = {
            t.key: {k: [c.to_dict()[k] for c in t.counts_per_lead] for k in COUNT_KEYS} for t in self.categorical
        }
        for name in ("valid_pixels", "nan_observation_pixels", "nan_forecast_pixels", "frames",
                     "empty_observation_frames"):
            out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class Coverage:
    """How much of the observed area a method forecast: per lead, the pixels with an observation and, among
    them, those where the method's forecast is not NaN (``CoverageAccumulator.result()``)."""

    observed_per_lead: tuple[int, ...]
    forecast_per_lead: tuple[int, ...]

    @property
    def per_lead(self) -> tuple[float, ...]:
        """The fraction of observed pixels forecast, per lead (NaN for a lead with no observed pixel)."""
        return tuple(_div(f, o) for f, o in zip(self.forecast_per_lead, self.observed_per_lead))

    @property
    def pooled(self) -> float:
        """The fraction over all leads (pixels summed before the ratio)."""
        return _div(sum(self.forecast_per_lead), sum(self.observed_per_lead))

    def to_dict(self) -> dict:
        return {"coverage": self.pooled, "coverage_per_lead": list(self.per_lead)}


# ---------------------------------------------------------------------------------------------
# per-frame scores (the terms the accumulators add up)


def _count_events(fc: np.ndarray, obs: np.ndarray, valid: np.ndarray, threshold: float) -> tuple[int, ...]:
    """(hits, misses, false alarms, correct negatives) over the `valid` pixels; event: value >= threshold."""
    f_yes = (fc >= threshold) & valid
    o_yes = (obs >= threshold) & valid
    hits = int(np.count_nonzero(f_yes & o_yes))
    misses = int(np.count_nonzero(o_yes)) - hits
    false_alarms = int(np.count_nonzero(f_yes)) - hits
    return hits, misses, false_alarms, int(np.count_nonzero(valid)) - hits - misses - false_alarms


def _frame_ratio(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)


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
        terms.append(_frame_ratio(s, n))
    return np.asarray(terms[0]) + np.asarray(terms[1])


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


_FRAME_SCORES = {"gdl": gdl_frames, "ssim": ssim_frames}  # by name, so accumulators pickle plainly


# ---------------------------------------------------------------------------------------------
# exact sums


_UNIT_EXP = 1074  # every finite float64 is a whole multiple of 2**-1074


def _units(x: float) -> int:
    num, den = x.as_integer_ratio()  # den is a power of two, at most 2**1074
    return num << (_UNIT_EXP - den.bit_length() + 1)


class ExactSums:
    """Per-lead sums of float terms, kept exactly as integers in units of 2**-1074.

    Adding is exact, so the sum does not depend on the order of the terms, on batching or on merging;
    a mean is rounded once, at the end. Non-finite terms (an overflowing squared error) are summed
    apart and win, as they would in a float sum.
    """

    def __init__(self, n: int):
        self.units = [0] * n
        self.special = [0.0] * n  # sum of the non-finite terms only: 0, +-inf or NaN

    def add(self, i: int, values) -> None:
        for v in np.asarray(values, dtype=np.float64).ravel().tolist():
            if math.isfinite(v):
                self.units[i] += _units(v)
            else:
                self.special[i] += v

    def merge(self, other: "ExactSums") -> None:
        if len(other.units) != len(self.units):
            raise ValueError("can only merge sums of the same length")
        self.units = [a + b for a, b in zip(self.units, other.units)]
        self.special = [a + b for a, b in zip(self.special, other.special)]

    def mean(self, n: int, i: int | None = None) -> float:
        """Sum (of lead i, or of all leads) / n, correctly rounded; NaN when n is 0."""
        units = sum(self.units) if i is None else self.units[i]
        special = sum(self.special) if i is None else self.special[i]
        if n <= 0:
            return float("nan")
        if special != 0.0:  # +-inf or NaN (NaN != 0 too)
            return special / n
        try:
            return units / (n << _UNIT_EXP)  # int / int: one correct rounding
        except OverflowError:
            return math.inf if units > 0 else -math.inf


# ---------------------------------------------------------------------------------------------
# accumulators


def _lead_batches(forecast, observed, n_leads: int) -> tuple[np.ndarray, np.ndarray]:
    fc, obs = _pair(forecast, observed)
    if fc.ndim == 3:
        fc, obs = fc[None], obs[None]
    if fc.ndim != 4 or fc.shape[1] != n_leads:
        raise ValueError(f"expected (B, {n_leads}, H, W) or ({n_leads}, H, W), got {tuple(fc.shape)}")
    return fc, obs


class _Accumulator:
    """Base: update() checks shapes and hands each lead's float64 frames to _add(); merge() adds the
    sums of an accumulator of the same kind and settings."""

    def __init__(self, n_leads: int):
        self.n_leads = int(n_leads)
        if self.n_leads < 1:
            raise ValueError("n_leads must be at least 1")

    def _settings(self) -> tuple:
        return (self.n_leads,)

    def update(self, forecast, observed):
        """Add forecasts and observations shaped (B, n_leads, H, W) or (n_leads, H, W), in dBZ; returns self."""
        fc, obs = _lead_batches(forecast, observed, self.n_leads)
        if fc.shape[0] == 0:
            return self
        for lead in range(self.n_leads):  # one lead at a time keeps the float64 copies small
            f = fc[:, lead].astype(np.float64)
            o = obs[:, lead].astype(np.float64)
            obs_ok = np.isfinite(o)
            self._add(lead, f, o, obs_ok, obs_ok & np.isfinite(f))
        return self

    def _add(self, lead, f, o, obs_ok, valid) -> None:  # pragma: no cover
        raise NotImplementedError

    def merge(self, other):
        """Add another accumulator's counts and sums (same kind, thresholds and leads); returns self."""
        if type(other) is not type(self) or other._settings() != self._settings():
            raise ValueError("can only merge accumulators of the same kind, thresholds and lead count")
        for name, mine in vars(self).items():
            theirs = getattr(other, name)
            if isinstance(mine, np.ndarray):
                mine += theirs
            elif isinstance(mine, (ExactSums, _Accumulator)):
                mine.merge(theirs)
        return self


class ContingencyAccumulator(_Accumulator):
    """Hits, misses, false alarms and correct negatives per threshold and lead."""

    def __init__(self, thresholds: Iterable[float] = DEFAULT_THRESHOLDS, n_leads: int = 10):
        super().__init__(n_leads)
        self.thresholds = normalize_thresholds(thresholds)
        self.counts = np.zeros((len(self.thresholds), self.n_leads, 4), dtype=np.int64)

    def _settings(self) -> tuple:
        return (self.n_leads, self.thresholds)

    def _add(self, lead, f, o, obs_ok, valid) -> None:
        for k, t in enumerate(self.thresholds):
            self.counts[k, lead] += _count_events(f, o, valid, t)

    def result(self) -> tuple[ThresholdScores, ...]:
        return tuple(
            ThresholdScores(t, tuple(Counts(*(int(v) for v in row)) for row in self.counts[k]))
            for k, t in enumerate(self.thresholds)
        )


class ErrorAccumulator(_Accumulator):
    """Squared and absolute errors (dBZ) over the valid pixels, per lead."""

    def __init__(self, n_leads: int = 10):
        super().__init__(n_leads)
        self.valid_pixels = np.zeros(self.n_leads, dtype=np.int64)
        self.sq_err = ExactSums(self.n_leads)
        self.abs_err = ExactSums(self.n_leads)

    def _add(self, lead, f, o, obs_ok, valid) -> None:
        self.valid_pixels[lead] += int(np.count_nonzero(valid))
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.where(valid, f - o, 0.0).reshape(len(f), -1)
            self.sq_err.add(lead, (d * d).sum(axis=1))  # one term per frame: batching cannot matter
        self.abs_err.add(lead, np.abs(d).sum(axis=1))

    def mse(self, lead: int | None = None) -> float:
        """Per lead, or pooled over leads (lead None)."""
        return self.sq_err.mean(self._n(lead), lead)

    def mae(self, lead: int | None = None) -> float:
        return self.abs_err.mean(self._n(lead), lead)

    def _n(self, lead) -> int:
        return int(self.valid_pixels.sum() if lead is None else self.valid_pixels[lead])


class FrameScoreAccumulator(_Accumulator):
    """The mean over frames of a per-frame score ('gdl' or 'ssim'), per lead; NaN frames left out."""

    def __init__(self, score: str, n_leads: int = 10):
        super().__init__(n_leads)
        if score not in _FRAME_SCORES:
            raise ValueError(f"unknown frame score {score!r}; known: {', '.join(_FRAME_SCORES)}")
        self.score = score
        self.sums = ExactSums(self.n_leads)
        self.counted = np.zeros(self.n_leads, dtype=np.int64)

    def _settings(self) -> tuple:
        return (self.n_leads, self.score)

    def _add(self, lead, f, o, obs_ok, valid) -> None:
        frame_score = _FRAME_SCORES[self.score]
        # frames in chunks of a few million pixels: SSIM holds about ten full-size temporaries
        chunk = max(1, _CHUNK_PIXELS // (f.shape[-2] * f.shape[-1]))
        values = np.concatenate([frame_score(f[i:i + chunk], o[i:i + chunk]) for i in range(0, len(f), chunk)])
        ok = np.isfinite(values)
        self.sums.add(lead, values[ok])
        self.counted[lead] += int(ok.sum())

    def mean(self, lead: int | None = None) -> float:
        """Per lead, or over the frames of every lead (lead None)."""
        n = self.counted.sum() if lead is None else self.counted[lead]
        return self.sums.mean(int(n), lead)


class ScoreAccumulator(_Accumulator):
    """Running sums of every score, per lead time, in constant memory.

    update() takes forecasts and observations shaped (B, n_leads, H, W) or (n_leads, H, W) in dBZ;
    result() gives the typed ``Scores`` (per lead and pooled); merge() adds another accumulator's sums,
    exactly: accumulators filled in any split of the same frames merge to the result of one.
    """

    def __init__(self, thresholds: Iterable[float] = DEFAULT_THRESHOLDS, n_leads: int = 10):
        super().__init__(n_leads)
        L = self.n_leads
        self.contingency = ContingencyAccumulator(thresholds, L)
        self.errors = ErrorAccumulator(L)
        self.gdl = FrameScoreAccumulator("gdl", L)
        self.ssim = FrameScoreAccumulator("ssim", L)
        self.nan_observation_pixels = np.zeros(L, dtype=np.int64)
        self.nan_forecast_pixels = np.zeros(L, dtype=np.int64)  # among pixels with an observation
        self.frames = np.zeros(L, dtype=np.int64)
        self.empty_frames = np.zeros(L, dtype=np.int64)  # observation all NaN: left out

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.contingency.thresholds

    def _settings(self) -> tuple:
        return (self.n_leads, self.thresholds)

    def _add(self, lead, f, o, obs_ok, valid) -> None:
        n_obs = int(np.count_nonzero(obs_ok))
        self.nan_observation_pixels[lead] += o.size - n_obs
        self.nan_forecast_pixels[lead] += n_obs - int(np.count_nonzero(valid))
        self.frames[lead] += f.shape[0]
        self.empty_frames[lead] += int(np.count_nonzero(~obs_ok.any(axis=(-2, -1))))
        for part in (self.contingency, self.errors, self.gdl, self.ssim):
            part._add(lead, f, o, obs_ok, valid)

    def _continuous(self, lead: int | None) -> ContinuousScores:
        return ContinuousScores(gdl=self.gdl.mean(lead), mse=self.errors.mse(lead), mae=self.errors.mae(lead),
                                ssim=self.ssim.mean(lead))

    def result(self) -> Scores:
        """Scores per lead and pooled (sums over leads before the ratio); NaN where undefined."""
        return Scores(
            categorical=self.contingency.result(),
            pooled=self._continuous(None),
            per_lead=tuple(self._continuous(lead) for lead in range(self.n_leads)),
            valid_pixels=int(self.errors.valid_pixels.sum()),
            nan_observation_pixels=int(self.nan_observation_pixels.sum()),
            nan_forecast_pixels=int(self.nan_forecast_pixels.sum()),
            frames=int(self.frames.sum()),
            empty_observation_frames=int(self.empty_frames.sum()),
        )


class CoverageAccumulator(_Accumulator):
    """Per lead: pixels with an observation, and among them those the forecast covers (not NaN)."""

    def __init__(self, n_leads: int = 10):
        super().__init__(n_leads)
        self.observed = np.zeros(self.n_leads, dtype=np.int64)
        self.forecast = np.zeros(self.n_leads, dtype=np.int64)

    def _add(self, lead, f, o, obs_ok, valid) -> None:
        self.observed[lead] += int(np.count_nonzero(obs_ok))
        self.forecast[lead] += int(np.count_nonzero(valid))

    def result(self) -> Coverage:
        return Coverage(tuple(int(v) for v in self.observed), tuple(int(v) for v in self.forecast))


def no_echo_where_missing(forecast, observed) -> np.ndarray:
    """The forecast with no echo (the floor, -10 dBZ) wherever it is NaN and the observation is not: inside
    the radar's coverage a missing forecast is a forecast of no rain to whoever reads it. Returns the
    forecast unchanged (as numpy) when there is nothing to fill."""
    fc, obs = _pair(forecast, observed)
    fill = np.isnan(fc) & np.isfinite(obs)
    return np.where(fill, np.asarray(DBZ_FLOOR, fc.dtype), fc) if fill.any() else fc


# ---------------------------------------------------------------------------------------------
# one-shot scores: accumulate once


def _accumulate_once(acc: _Accumulator, forecast, observed) -> _Accumulator:
    """`acc` (one lead) updated with every frame of arrays shaped (..., H, W)."""
    fc, obs = _pair(forecast, observed)
    return acc.update(fc.reshape(-1, 1, *fc.shape[-2:]), obs.reshape(-1, 1, *obs.shape[-2:]))


def contingency(forecast, observed, threshold: float) -> Counts:
    """Hits, misses, false alarms and correct negatives at `threshold` dBZ (event: value >= threshold).

    Pixels where the observation or the forecast is NaN are left out.
    """
    acc = _accumulate_once(ContingencyAccumulator([threshold], n_leads=1), forecast, observed)
    return acc.result()[0].counts


def categorical_scores(counts: Counts) -> CategoricalScores:
    """CSI, POD, FAR and frequency bias from counts (NaN where a denominator is zero)."""
    return CategoricalScores.from_counts(counts)


def csi(forecast, observed, threshold: float) -> float:
    return contingency(forecast, observed, threshold).scores().csi


def pod(forecast, observed, threshold: float) -> float:
    return contingency(forecast, observed, threshold).scores().pod


def far(forecast, observed, threshold: float) -> float:
    return contingency(forecast, observed, threshold).scores().far


def frequency_bias(forecast, observed, threshold: float) -> float:
    return contingency(forecast, observed, threshold).scores().bias


def mse(forecast, observed) -> float:
    """Mean squared error in dBZ^2 over pixels where both fields are finite."""
    return _accumulate_once(ErrorAccumulator(n_leads=1), forecast, observed).mse()


def mae(forecast, observed) -> float:
    """Mean absolute error in dBZ over pixels where both fields are finite."""
    return _accumulate_once(ErrorAccumulator(n_leads=1), forecast, observed).mae()


def gdl(forecast, observed) -> float:
    """GDL averaged over frames (frames without valid differences left out)."""
    return _accumulate_once(FrameScoreAccumulator("gdl", n_leads=1), forecast, observed).mean()


def ssim(forecast, observed) -> float:
    """SSIM averaged over frames (NaN frames left out)."""
    return _accumulate_once(FrameScoreAccumulator("ssim", n_leads=1), forecast, observed).mean()
