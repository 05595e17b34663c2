"""What training optimises and selects for: the loss, the learning-rate schedule, scheduled sampling,
and the validation score that picks the best checkpoint. Pure functions, tested by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ..errors import NowcastError
from ..units import DBZ_CEIL, DBZ_FLOOR, MP_A, MP_B

LOSSES = ("l1", "l2", "l1+l2")
LR_SCHEDULES = ("constant", "cosine")

SOFT_CSI_DBZ = (30.0, 40.0)  # the thresholds the checkpoints are chosen by
SOFT_CSI_WIDTH_DBZ = 2.0  # how soft the soft-CSI events are: 2 dBZ from 27 % to 73 %
BALANCE_ON = ("target", "both")

# HKO-7 balanced loss (Shi et al. 2017): weight 1, 2, 5, 10, 30 from rain rates of 2, 5, 10, 30 mm/h up
BALANCE_RAIN_RATES = (2.0, 5.0, 10.0, 30.0)
BALANCE_WEIGHTS = (1.0, 2.0, 5.0, 10.0, 30.0)


def truth_probability(iteration: int, sampling_iterations: int) -> float:
    """PredRNN's scheduled sampling: the probability of feeding a true frame, 1 at the start,
    decaying linearly to 0 at ``sampling_iterations`` (0 = never feed truth)."""
    if sampling_iterations <= 0:
        return 0.0
    return max(0.0, 1.0 - float(iteration) / float(sampling_iterations))


def sampling_mask(seed: int, iteration: int, batch: int, steps: int, probability: float) -> np.ndarray:
    """(batch, steps) float32 mask, 1 = feed the true frame at that output step.

    Drawn from a generator keyed by (seed, iteration), so the mask of any iteration is reproducible
    without carrying RNG state across a resume.
    """
    rng = np.random.default_rng([int(seed), 0x5A3B, int(iteration)])
    return (rng.random((batch, steps)) < probability).astype(np.float32)


def learning_rate(iteration: int, optim) -> float:
    """Learning rate for the optimizer step that follows ``iteration`` completed steps.

    ``optim``: an OptimConfig (or a TrainConfig, whose ``optim`` is used)."""
    optim = getattr(optim, "optim", optim)
    base = float(optim.lr)
    warm = int(optim.warmup)
    if warm > 0 and iteration < warm:
        return base * (iteration + 1) / warm
    if optim.lr_schedule == "constant":
        return base
    span = max(1, int(optim.iterations) - warm)
    progress = min(1.0, max(0.0, (iteration - warm) / span))
    return float(optim.min_lr + 0.5 * (base - optim.min_lr) * (1.0 + math.cos(math.pi * progress)))


def balance_thresholds_dbz(a: float = MP_A, b: float = MP_B) -> tuple[float, ...]:
    """The HKO-7 rain-rate thresholds in dBZ (Marshall-Palmer by default)."""
    return tuple(10.0 * math.log10(a * r**b) for r in BALANCE_RAIN_RATES)


def balanced_weights(target_dbz: torch.Tensor, thresholds_dbz=None, power: float = 1.0) -> torch.Tensor:
    """Per-pixel loss weights from the target reflectivity: 1 below 2 mm/h, 2, 5, 10, 30 from 30 mm/h
    (each raised to ``power``)."""
    thresholds_dbz = balance_thresholds_dbz() if thresholds_dbz is None else thresholds_dbz
    levels = [w ** float(power) for w in BALANCE_WEIGHTS]
    w = torch.full_like(target_dbz, levels[0])
    for t, lo, hi in zip(thresholds_dbz, levels[:-1], levels[1:]):
        w = w + (hi - lo) * (target_dbz >= t).to(w.dtype)
    return w


def masked_loss(pred, target, mask, kind: str = "l1+l2", balanced: bool = False,
                balance_power: float = 1.0, denominator=None, balance_on: str = "target",
                soft_csi: float = 0.0, soft_csi_dbz=SOFT_CSI_DBZ, gdl: float = 0.0, pool=None) -> torch.Tensor:
    """Mean (weighted) L1 / L2 / L1+L2 error on the [0, 1] scale over the pixels that have data.

    Computed in float32 whatever precision the forward pass ran in. ``denominator``: divide by this
    count of valid pixels instead of this batch's (a process's share of a global batch divides by the
    global count). ``balance_on="both"`` takes each pixel's HKO-7 weight from the larger of forecast and
    truth, so a false alarm of heavy echo costs as much as a miss. ``soft_csi`` > 0 adds that weight times
    the mean of (1 - soft CSI) at the ``soft_csi_dbz`` thresholds (``soft_csi_loss``); ``gdl`` > 0 adds that
    weight times the gradient difference loss (``gdl_loss``).

    ``pool``: in a process of a team that holds a share of the global batch, a function that sums a tensor
    over the processes (``distributed.all_sum``). Every count then is the global batch's, and each term is
    split so that the processes' losses, and their gradients, sum to the loss of the whole batch."""
    pred = pred.float()
    d = pred - target
    if kind == "l1":
        err = d.abs()
    elif kind == "l2":
        err = d * d
    elif kind == "l1+l2":
        err = d.abs() + d * d
    else:
        raise NowcastError(f"unknown loss {kind!r}; choose l1, l2 or l1+l2")
    w = mask
    if balanced:
        heavy = target if balance_on == "target" else torch.maximum(target, pred.detach())
        w = w * balanced_weights(unit_to_dbz_unclipped(heavy), power=balance_power)
    if pool is not None:
        count = pool(mask.sum())
    else:
        count = mask.sum() if denominator is None else torch.as_tensor(denominator, dtype=err.dtype)
    loss = (err * w).sum() / count.clamp(min=1.0)
    if soft_csi > 0:
        loss = loss + float(soft_csi) * soft_csi_loss(pred, target, mask, soft_csi_dbz, pool=pool)
    if gdl > 0:
        loss = loss + float(gdl) * gdl_loss(pred, target, mask, pool=pool)
    return loss


def gdl_loss(pred, target, mask, pool=None) -> torch.Tensor:
    """Gradient difference loss (Mathieu et al. 2016, alpha = 1) on the [0, 1] scale, as ``verify.gdl`` scores
    it: the mean over vertical and over horizontal neighbour pairs of ||d forecast| - |d truth||, counting
    only pairs whose two pixels have data. A forecast that is smoother or blockier than the truth pays.
    ``pool``: as in ``masked_loss`` (the pair counts become the global batch's)."""
    pred, target, mask = pred.float(), target.float(), mask.float()
    total = pred.new_zeros(())
    for axis in (-2, -1):
        diff = (pred.diff(dim=axis).abs() - target.diff(dim=axis).abs()).abs()
        pair = mask.narrow(axis, 0, mask.shape[axis] - 1) * mask.narrow(axis, 1, mask.shape[axis] - 1)
        count = pair.sum() if pool is None else pool(pair.sum())
        total = total + (diff * pair).sum() / count.clamp(min=1.0)
    return total


def unit_to_dbz_unclipped(x: torch.Tensor) -> torch.Tensor:
    """The [0, 1] scale back to dBZ on a tensor, not clipped (unlike ``units.unit_to_dbz``): a forecast past the
    range keeps its value and its gradient in the loss terms built on dBZ."""
    return x * (DBZ_CEIL - DBZ_FLOOR) + DBZ_FLOOR


def soft_csi_loss(pred, target, mask, thresholds_dbz=SOFT_CSI_DBZ, width_dbz: float = SOFT_CSI_WIDTH_DBZ,
                  pool=None):
    """Mean over thresholds of 1 - CSI, with the events made differentiable: sigmoid((dBZ - T) / width).

    Counts are pooled over the whole batch, as the scores that select checkpoints pool them; a threshold no
    pixel of forecast or truth comes near adds nothing (its CSI is taken as 1). ``pool``: as in
    ``masked_loss`` (``pooled_soft_csi_terms``).
    """
    p_dbz, t_dbz = unit_to_dbz_unclipped(pred.float()), unit_to_dbz_unclipped(target)
    terms, counts = [], []
    for t in thresholds_dbz:
        f = torch.sigmoid((p_dbz - t) / width_dbz) * mask
        o = torch.sigmoid((t_dbz - t) / width_dbz) * mask
        hits = (f * o).sum()
        union = f.sum() + o.sum() - hits
        terms.append(torch.where(union > 1e-3, 1.0 - hits / union.clamp(min=1e-6), union * 0.0))
        counts.append(torch.stack([hits, union]))
    if pool is None:
        return torch.stack(terms).mean()
    counts = torch.stack(counts)
    return pooled_soft_csi_terms(counts, pool(counts)).mean()


def pooled_soft_csi_terms(local: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """1 - CSI per threshold for one process of a team: ``local`` (thresholds, 2) holds its (hits, union),
    ``total`` the team's sums (no gradient). Summed over the processes, the terms are 1 - H/U of the whole
    batch, and so are their gradients: d(H/U) = (dH U - H dU) / U^2 is a sum of each process's
    (dh U - H du) / U^2, and the value is shared out in proportion to each process's union."""
    hits, union = local.unbind(1)
    big_h, big_u = total.unbind(1)
    big_u_safe = big_u.clamp(min=1e-6)
    csi_part = (hits * big_u_safe - big_h * union) / big_u_safe**2  # its values sum to 0 over the team
    value = (union / big_u_safe).detach() * (1.0 - big_h / big_u_safe)
    return torch.where(big_u > 1e-3, value - csi_part, union * 0.0)


_METRIC_TERM = re.compile(r"^(csi|pod|far|bias)(\d+(?:\.\d+)?)$|^(gdl|mse|mae|ssim)$")
_HIGHER_BETTER = {"csi": True, "pod": True, "ssim": True, "far": False, "gdl": False, "mse": False, "mae": False}


def parse_metric(text: str) -> tuple[list[tuple[str, str | None]], bool]:
    """'csi30+csi40' -> ([('csi', '30'), ('csi', '40')], higher_is_better). The metric is the terms' mean."""
    terms, directions = [], set()
    for part in str(text).lower().replace(" ", "").split("+"):
        m = _METRIC_TERM.match(part)
        if not m or m.group(1) == "bias":
            raise NowcastError(
                f"unknown validation metric {part!r} in {text!r}: use csiT, podT, farT (T in dBZ), gdl, mse, mae, "
                "ssim, joined by '+'"
            )
        name = m.group(1) or m.group(3)
        key = None if m.group(3) else f"{float(m.group(2)):g}"
        terms.append((name, key))
        directions.add(_HIGHER_BETTER[name])
    if len(directions) != 1:
        raise NowcastError(f"validation metric {text!r} mixes higher-is-better and lower-is-better scores")
    return terms, directions.pop()


def metric_value(scores: dict, terms) -> float:
    """Mean of the terms, leaving out undefined ones (a CSI with no observed and no forecast event:
    nothing to get wrong); NaN only when every term is undefined."""
    vals = []
    for name, key in terms:
        v = scores[name] if key is None else scores[name].get(key, float("nan"))
        vals.append(float("nan") if v is None else float(v))
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def is_better(value: float, old: float | None, higher_better: bool) -> bool:
    """Whether a validation score beats the best so far (an undefined score never does)."""
    if not math.isfinite(value):
        return False
    if old is None or not math.isfinite(old):
        return True
    return value > old if higher_better else value < old
