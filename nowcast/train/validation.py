"""Validation: the model and the baselines scored on exactly the same windows (``nowcast.evaluate``)."""

from __future__ import annotations

import warnings

import torch

from ..errors import NowcastError
from ..evaluate import EvaluationResult, evaluate
from ..forecast import ModelForecaster
from ..methods import get_method
from ..verify import Scores
from .config import TrainConfig
from .objectives import metric_value


def _evaluate(val_seqs, methods, config: TrainConfig) -> EvaluationResult:
    # domain "common": each method is scored on the pixels it forecast, as validation always has (the model and
    # the baselines are evaluated apart), so a run's logged scores and best checkpoint keep their meaning
    v = config.validation
    return evaluate(val_seqs, methods, thresholds=v.thresholds, n_in=config.model.input_frames,
                    n_out=config.model.output_frames, stride=v.stride, batch_size=v.batch_size, domain="common")


def summarize(scores: Scores, windows: int, terms) -> dict:
    """One method's scores as the flat log row: metric, csiT, podT, farT, gdl, mse, mae, ssim, windows."""
    pooled = {name: {t.key: getattr(t, name) for t in scores.categorical} for name in ("csi", "pod", "far")}
    continuous = {name: getattr(scores, name) for name in ("gdl", "mse", "mae", "ssim")}
    row = {"metric": metric_value({**pooled, **continuous}, terms), "windows": int(windows)}
    for name, by_threshold in pooled.items():
        for key, v in by_threshold.items():
            row[f"{name}{key}"] = float(v)
    row.update(continuous)
    return row


def validate_model(model, model_config, val_seqs, config: TrainConfig, device, terms) -> dict:
    """The model's flat scores on the validation windows (full precision, eval mode, weights untouched)."""
    info = {"name": "model", "path": None, "config": model_config, "meta": {}, "sha256": None}
    was_training = model.training  # the forecaster switches the model to eval mode
    try:
        forecaster = ModelForecaster(model, info, device=device, batch_size=config.validation.batch_size)
        with torch.no_grad():
            res = _evaluate(val_seqs, [forecaster], config)
    finally:
        model.train(was_training)
    return summarize(res.method(forecaster.name).scores, res.windows, terms)


def score_baselines(val_seqs, config: TrainConfig, terms) -> tuple[dict, list[str]]:
    """The baselines' flat scores on the validation windows, and notes on the baselines left out
    (pysteps missing, grid too small). Computed once per run: they do not change while the model trains."""
    methods, notes = [], []
    for name in config.validation.baselines:
        try:
            methods.append(get_method(name))
        except NowcastError as exc:
            notes.append(f"baseline {name} left out: {exc}")
    if not methods:
        return {}, notes
    smallest = min(min(da.shape[-2:]) for _, da in val_seqs)
    for m in list(methods):
        if smallest < getattr(m, "min_grid", 1):
            methods.remove(m)
            notes.append(f"baseline {m.name} left out: validation grids of {smallest} pixels are too small")
    if not methods:
        return {}, notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysteps' motion warnings on dry windows say nothing here
        res = _evaluate(val_seqs, methods, config)
    return {m.name: summarize(res.method(m.name).scores, res.windows, terms) for m in methods}, notes
