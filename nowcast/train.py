"""The training loop: windows from radar sequences -> a MotionRNN / PredRNN checkpoint.

Paper recipe (Wu et al. 2021): L1 + L2 loss, Adam at lr 3e-4, batch 8, scheduled sampling of
ground-truth frames. Options beyond it: heavy-echo loss weighting (HKO-7 "balanced" weights), a
cosine schedule with warm-up, mixed precision on a GPU, and augmentation (see ``nowcast.data``).

Files in the output folder
--------------------------
- ``train_state.pt``: everything a resumed run needs, written in one atomic step (temp + rename):
  iteration, model weights, optimizer, GradScaler, sampler state, torch RNG, best score so far,
  the settings. Loaded with ``torch.load(weights_only=True)``, so it cannot run code.
- ``last.safetensors``: the latest weights as a normal checkpoint (``nowcast.checkpoint``), written
  right after ``train_state.pt``. Because the state file holds the weights too, a kill between the two
  writes loses nothing: resume reads the state file alone and rewrites a lagging ``last.safetensors``.
- ``best.safetensors``: the weights with the best validation score so far.
- ``log.csv`` / ``log.jsonl``: one row every ``log_every`` iterations and at every validation.

Several processes (torchrun, ``nowcast.distributed``): ``batch_size`` is the global batch. Every process
draws the same global batch from its own copy of the sampler (same seed, so the sampler states never
differ and a resume is exact) and trains on its equal share; DistributedDataParallel averages the
gradients, and the loss is scaled so that the update equals the one-process update on the whole batch.
Process 0 alone validates, writes checkpoints and logs, and shows progress.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import distributed
from .atomic import atomic_output, atomic_write_text
from .data import SamplerConfig, WindowSampler, parse_time_range, split_by_time_range, split_in_time
from .errors import NowcastError
from .units import DBZ_CEIL, DBZ_FLOOR, MP_A, MP_B

STATE_FILE = "train_state.pt"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
STATE_VERSION = 1

# HKO-7 balanced loss (Shi et al. 2017): weight 1, 2, 5, 10, 30 from rain rates of 2, 5, 10, 30 mm/h up
BALANCE_RAIN_RATES = (2.0, 5.0, 10.0, 30.0)
BALANCE_WEIGHTS = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class TrainConfig:
    """Everything a training run needs. Sequences are opened already: (name, DataArray in dBZ) pairs."""

    out: str | Path = "runs/model"
    sequences: list = field(default_factory=list)
    # validation: held-out sequences, and/or the last fraction of each training sequence
    val_sequences: list = field(default_factory=list)
    val_fraction: float = 0.0
    val_time: str | None = None  # or: "START/END" (ISO 8601); frames in that range validate, the rest trains
    # synthetic data mixed in (nowcast.synthetic): probability that a sample is synthetic
    synthetic_fraction: float = 0.0
    synthetic_sequences: int = 4
    synthetic_frames: int = 48
    synthetic_size: int = 128
    synthetic_motion: str = "mixed"
    synthetic_step_minutes: float = 5.0
    # model (nowcast.nn.ModelConfig); any other ModelConfig field goes in model_options
    backbone: str = "predrnn"
    motion: bool = True
    num_layers: int = 4
    hidden: int = 64
    kernel_size: int = 5
    patch_size: int = 4
    model_options: dict = field(default_factory=dict)
    n_in: int = 5
    n_out: int = 10
    # samples and augmentation (nowcast.data.SamplerConfig)
    crop: int = 64
    coarsen_factors: tuple = (1, 2)
    time_strides: tuple = (1, 2, 3)
    flips: bool = True
    echo_threshold: float = 15.0
    min_echo_fraction: float = 0.02
    dry_keep_probability: float = 0.1
    min_valid_fraction: float = 0.5
    # optimisation
    iterations: int = 100_000
    batch_size: int = 8
    lr: float = 3e-4
    lr_schedule: str = "constant"  # constant | cosine
    warmup: int = 0  # iterations of linear warm-up from 0
    min_lr: float = 0.0  # end of the cosine schedule
    grad_clip: float | None = None  # max global gradient norm; None = no clipping (paper)
    loss: str = "l1+l2"  # l1 | l2 | l1+l2
    balanced_loss: bool = False  # heavy-echo weighting (HKO-7 weights on the target dBZ)
    balance_power: float = 1.0  # the HKO-7 weights raised to this power: 0.5 is a milder weighting
    sampling_iterations: int | None = None  # truth-feeding probability 1 -> 0 over these; None = half the run
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 if the GPU has it, else fp16; off on CPU) | bf16 | fp16 | off
    deterministic: bool = False  # torch.use_deterministic_algorithms during the run
    # validation, checkpoints, logs
    val_every: int = 1000
    val_stride: int = 1
    val_batch_size: int = 8
    val_thresholds: tuple = (30.0, 40.0, 50.0)
    best_metric: str = "csi30+csi40"
    checkpoint_every: int = 1000
    log_every: int = 50
    resume: bool = False
    init_from: str | None = None  # start a fresh run from these weights (a checkpoint of the same architecture)
    overwrite: bool = False  # allow starting afresh in a folder that holds a run

    def settings(self) -> dict:
        """The settings without the data, as plain JSON types (stored with checkpoints and state)."""
        d = {}
        for f in dataclasses.fields(self):
            if f.name in ("sequences", "val_sequences"):
                continue
            v = getattr(self, f.name)
            d[f.name] = str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
        return d


@dataclass
class ProgressEvent:
    """What the training loop tells its progress callback.

    kind: "start" | "step" | "validation" | "checkpoint" | "end". ``loss`` is the mean over the
    iterations since the last step event of the kind "step" (every iteration, so the last one's loss).
    """

    kind: str
    iteration: int
    total: int
    start_iteration: int = 0
    loss: float | None = None
    lr: float | None = None
    it_per_s: float | None = None
    eta_s: float | None = None
    truth_probability: float | None = None
    scores: dict | None = None
    message: str | None = None


# ---------------------------------------------------------------------------------------------
# pieces that are pure functions (tested by hand)


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


def learning_rate(iteration: int, config: TrainConfig) -> float:
    """Learning rate for the optimizer step that follows ``iteration`` completed steps."""
    base = float(config.lr)
    warm = int(config.warmup)
    if warm > 0 and iteration < warm:
        return base * (iteration + 1) / warm
    if config.lr_schedule == "constant":
        return base
    span = max(1, int(config.iterations) - warm)
    progress = min(1.0, max(0.0, (iteration - warm) / span))
    return float(config.min_lr + 0.5 * (base - config.min_lr) * (1.0 + math.cos(math.pi * progress)))


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
                balance_power: float = 1.0, denominator=None) -> torch.Tensor:
    """Mean (weighted) L1 / L2 / L1+L2 error on the [0, 1] scale over the pixels that have data.

    ``denominator``: divide by this count of valid pixels instead of this batch's (a process's share
    of a global batch divides by the global count)."""
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
        w = w * balanced_weights(target * (DBZ_CEIL - DBZ_FLOOR) + DBZ_FLOOR, power=balance_power)
    count = mask.sum() if denominator is None else torch.as_tensor(denominator, dtype=err.dtype)
    return (err * w).sum() / count.clamp(min=1.0)


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


# ---------------------------------------------------------------------------------------------
# progress display


class RichProgress:
    """Default progress display: a rich progress bar with loss, lr, it/s and time left."""

    def __init__(self, console=None):
        self.console = console
        self._progress = None
        self._task = None

    def __call__(self, ev: ProgressEvent) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if ev.kind == "start":
            self._progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=ev.total, completed=ev.iteration, loss="-", speed=""
            )
            if ev.message:
                self._progress.console.print(ev.message)
        elif self._progress is None:
            return
        elif ev.kind == "step":
            speed = f"{ev.it_per_s:.2f} it/s" if ev.it_per_s else ""
            loss = f"{ev.loss:.4f}" if ev.loss is not None else "-"
            self._progress.update(self._task, completed=ev.iteration, loss=loss, speed=speed)
        elif ev.kind == "validation" and ev.scores:
            keys = [k for k in ev.scores if k == "metric" or k.startswith("csi") or k == "gdl"]
            shown = ", ".join(
                f"{k} {ev.scores[k]:.3f}" if isinstance(ev.scores[k], float) and math.isfinite(ev.scores[k])
                else f"{k} -" for k in keys
            )
            self._progress.console.print(f"iteration {ev.iteration}: {shown}")
        elif ev.kind == "end":
            if ev.message:
                self._progress.console.print(ev.message)
            self._progress.stop()
            self._progress = None


def _progress_callback(progress) -> Callable[[ProgressEvent], None] | None:
    if progress is None or progress is False:
        return None
    if progress == "rich":
        return RichProgress()
    if callable(progress):
        return progress
    raise NowcastError(f"progress must be 'rich', None or a callable, got {progress!r}")


# ---------------------------------------------------------------------------------------------
# setup helpers


def choose_device(device: str) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise NowcastError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NowcastError("device cuda asked for, but torch sees no CUDA GPU")
    return dev


def choose_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision. Mixed precision only on a GPU."""
    amp = (amp or "off").lower()
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise NowcastError(f"unknown mixed-precision setting {amp!r}; use auto, bf16, fp16 or off")
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _named(seqs, label: str) -> list[tuple[str, Any]]:
    out = []
    for i, item in enumerate(seqs or ()):
        if isinstance(item, tuple) and len(item) == 2:
            out.append((str(item[0]), item[1]))
        else:
            out.append((f"{label}{i}", item))
    return out


def _synthetic(config: TrainConfig) -> list[tuple[str, Any]]:
    from .synthetic import generate

    out = []
    for i in range(int(config.synthetic_sequences)):
        seed = int(np.random.default_rng([int(config.seed), 0x5E7, i]).integers(2**31 - 1))
        da = generate(
            n_frames=int(config.synthetic_frames),
            height=int(config.synthetic_size),
            width=int(config.synthetic_size),
            seed=seed,
            step_minutes=config.synthetic_step_minutes,
            motion=config.synthetic_motion,
        )
        out.append((f"synthetic{i}", da))
    return out


def _model_config(config: TrainConfig):
    from .nn import ModelConfig

    opts = dict(
        backbone=config.backbone,
        motion=bool(config.motion),
        # MotionRNN off means the plain backbone: the Motion Highway goes with the MotionGRU
        highway=bool(config.motion),
        num_layers=int(config.num_layers),
        hidden=config.hidden,
        kernel_size=int(config.kernel_size),
        patch_size=int(config.patch_size),
        input_frames=int(config.n_in),
        output_frames=int(config.n_out),
    )
    opts.update(config.model_options or {})
    return ModelConfig.from_dict(opts)


def _data_fingerprint(seqs) -> list:
    return [[name, [int(s) for s in getattr(da, "shape", ())]] for name, da in seqs]


def _validate_config(config: TrainConfig) -> None:
    def bad(msg):
        raise NowcastError(f"invalid training settings: {msg}")

    for name in ("iterations", "batch_size", "val_every", "checkpoint_every", "log_every", "val_stride",
                 "val_batch_size"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            bad(f"{name} must be a positive integer, got {v!r}")
    if config.lr <= 0:
        bad(f"lr must be positive, got {config.lr}")
    if config.lr_schedule not in ("constant", "cosine"):
        bad(f"lr_schedule must be constant or cosine, got {config.lr_schedule!r}")
    if config.warmup < 0:
        bad(f"warmup must be >= 0, got {config.warmup}")
    if not 0.0 <= config.val_fraction < 1.0:
        bad(f"val_fraction must lie in [0, 1), got {config.val_fraction}")
    if config.val_time and config.val_fraction > 0:
        bad("give a validation fraction or a validation time range, not both")
    if config.val_time:
        parse_time_range(config.val_time)
    if not 0.0 <= config.synthetic_fraction <= 1.0:
        bad(f"synthetic_fraction must lie in [0, 1], got {config.synthetic_fraction}")
    if not 0.0 < config.balance_power <= 1.0:
        bad(f"balance_power must lie in (0, 1], got {config.balance_power}")
    if config.loss not in ("l1", "l2", "l1+l2"):
        bad(f"loss must be l1, l2 or l1+l2, got {config.loss!r}")
    if config.crop % config.patch_size:
        bad(f"crop {config.crop} is not a multiple of the patch size {config.patch_size}")
    parse_metric(config.best_metric)


def _split_off_validation(config: TrainConfig, train_seqs, syn_seqs, val_seqs):
    """Move the validation part of each training sequence (the last fraction, or a time range) to the
    validation list. Returns (train, synthetic, val, names of sequences left whole)."""
    gap = config.n_in + config.n_out
    if config.val_fraction > 0:
        def split(da):
            tr, va = split_in_time(da, config.val_fraction, gap, min_val=gap)
            return [tr], va

        pools = (train_seqs, syn_seqs)
        what = (f"val_fraction {config.val_fraction}: no sequence is long enough to split into training and "
                f"validation parts ({gap} frames each, {gap} frames apart); give validation sequences instead")
    elif config.val_time:
        start, end = parse_time_range(config.val_time)

        def split(da):
            return split_by_time_range(da, start, end, gap, min_len=gap)

        pools = (train_seqs,)  # synthetic sequences have made-up times
        what = f"validation time range {config.val_time}: no training sequence has {gap} frames in it"
    else:
        return train_seqs, syn_seqs, val_seqs, []
    val_seqs, unsplit, kept = list(val_seqs), [], []
    for pool in pools:
        dest = []
        for name, da in pool:
            parts, va = split(da)
            if va is None:
                unsplit.append(name)
            else:
                val_seqs.append((f"{name}[val]", va))
            dest += [(name if len(parts) == 1 else f"{name}[{k}]", p) for k, p in enumerate(parts)]
        kept.append(dest)
    if not any(name.endswith("[val]") for name, _ in val_seqs):
        raise NowcastError(what)
    return kept[0], (kept[1] if len(kept) > 1 else syn_seqs), val_seqs, unsplit


def _atomic_torch_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())


def load_train_state(path) -> dict:
    """Read a train_state.pt safely (plain tensors and containers only)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NowcastError("no training state to resume from", path) from None
    except Exception as exc:  # a truncated or foreign file
        raise NowcastError(f"cannot read the training state: {exc}", path) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise NowcastError("not a nowcast training state (or from another version)", path)
    return state


class _Log:
    """log.csv + log.jsonl, appended row by row; on resume, rows after the resumed iteration are dropped."""

    def __init__(self, out: Path, thresholds, resume_iteration: int | None):
        self.csv_path = out / LOG_CSV
        self.jsonl_path = out / LOG_JSONL
        keys = [f"{k:g}" for k in thresholds]
        self.columns = (
            ["iteration", "loss", "lr", "it_per_s", "truth_probability", "elapsed_s", "val_metric"]
            + [f"val_csi{k}" for k in keys]
            + [f"val_pod{k}" for k in keys]
            + [f"val_far{k}" for k in keys]
            + ["val_gdl", "val_mse", "val_mae", "val_ssim"]
        )
        if resume_iteration is None:
            atomic_write_text(self.csv_path, ",".join(self.columns) + "\n")
            atomic_write_text(self.jsonl_path, "")
        else:
            self._truncate(resume_iteration)

    def _truncate(self, iteration: int) -> None:
        rows = []
        if self.jsonl_path.exists():
            for line in self.jsonl_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if int(row.get("iteration", 0)) <= iteration:
                    rows.append(row)
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.columns})
        atomic_write_text(self.csv_path, buf.getvalue())

    def write(self, row: dict) -> None:
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with open(self.jsonl_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        with open(self.csv_path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in self.columns})


# ---------------------------------------------------------------------------------------------
# validation


def _validate_model(model, model_config, val_seqs, config: TrainConfig, device) -> dict:
    from .evaluate import evaluate
    from .forecast import ModelForecaster

    info = {"name": "model", "path": None, "config": model_config, "meta": {}, "sha256": None}
    was_training = model.training  # the forecaster switches the model to eval mode
    try:
        forecaster = ModelForecaster(model, info, device=device, batch_size=config.val_batch_size)
        with torch.no_grad():
            res = evaluate(
                val_seqs,
                [forecaster],
                thresholds=config.val_thresholds,
                n_in=config.n_in,
                n_out=config.n_out,
                stride=config.val_stride,
                batch_size=config.val_batch_size,
            )
    finally:
        model.train(was_training)
    r = res["results"][forecaster.name]
    scores = {"windows": int(res["windows"])}
    for name in ("csi", "pod", "far"):
        for key, v in r[name].items():
            scores[f"{name}{key}"] = float(v)
    for name in ("gdl", "mse", "mae", "ssim"):
        scores[name] = float(r[name])
    return scores, r


def _flat_scores(r: dict) -> dict:
    """The pooled scores of an evaluate() result in the form parse_metric's terms index."""
    return {k: r[k] for k in ("csi", "pod", "far", "gdl", "mse", "mae", "ssim")}


# ---------------------------------------------------------------------------------------------
# the loop


def train(config: TrainConfig, progress: str | Callable[[ProgressEvent], None] | None = None) -> dict:
    """Train a network as ``config`` says; returns a summary dict.

    progress: None (quiet), "rich" (a progress bar on the terminal), or a callable that receives a
    ProgressEvent at the start, after every iteration, at validations and checkpoints, and at the end.
    A KeyboardInterrupt from the callback, or SIGINT (Ctrl-C) during the run, saves a checkpoint
    after the current iteration and returns with status "interrupted"; ``resume=True`` continues.

    Summary: status ("completed" | "interrupted"), iterations, start_iteration, wall_time_s,
    train_time_s (over all sessions of the run), device, amp, best {iteration, metric, value, scores},
    last_validation, paths {out, last, best, state, log_csv, log_jsonl}, data {train, val, unsplit}.
    """
    t_wall = time.perf_counter()
    _validate_config(config)
    team = distributed.team_from_environment()
    if config.batch_size % team.world:
        raise NowcastError(f"batch size {config.batch_size} does not split evenly over {team.world} processes")
    callback = _progress_callback(progress) if team.is_main else None
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, last_path = out / STATE_FILE, out / LAST_FILE

    if not config.resume and not config.overwrite and (state_path.exists() or last_path.exists()):
        raise NowcastError("the output folder holds a training run already: resume it, or allow overwriting", out)
    state = load_train_state(state_path) if config.resume else None

    device = distributed.process_device(team, choose_device(config.device))
    amp_dtype = choose_amp(config.amp, device)
    model_config = _model_config(config)
    metric_terms, higher_better = parse_metric(config.best_metric)

    # ---- data
    train_seqs = _named(config.sequences, "sequence")
    val_seqs = _named(config.val_sequences, "validation")
    syn_seqs = _synthetic(config) if config.synthetic_fraction > 0 else []
    train_seqs, syn_seqs, val_seqs, unsplit = _split_off_validation(config, train_seqs, syn_seqs, val_seqs)
    syn_fraction = 1.0 if not train_seqs else float(config.synthetic_fraction)
    sampler_config = SamplerConfig(
        n_in=config.n_in,
        n_out=config.n_out,
        crop=config.crop,
        coarsen_factors=tuple(config.coarsen_factors),
        time_strides=tuple(config.time_strides),
        flips=config.flips,
        echo_threshold=config.echo_threshold,
        min_echo_fraction=config.min_echo_fraction,
        dry_keep_probability=config.dry_keep_probability,
        min_valid_fraction=config.min_valid_fraction,
        synthetic_fraction=syn_fraction,
    )
    sampler = WindowSampler(train_seqs, sampler_config, seed=config.seed, synthetic=syn_seqs)

    # ---- model and optimizer
    created_group = distributed.join(team, device)
    try:
        return _train_loop(config, team, device, amp_dtype, model_config, metric_terms, higher_better,
                           state, out, train_seqs, syn_seqs, val_seqs, unsplit, sampler, callback, t_wall)
    finally:
        distributed.leave(created_group)


def _train_loop(config, team, device, amp_dtype, model_config, metric_terms, higher_better, state, out,
                train_seqs, syn_seqs, val_seqs, unsplit, sampler, callback, t_wall) -> dict:
    from .checkpoint import save_checkpoint
    from .nn import build_model

    state_path, last_path, best_path = out / STATE_FILE, out / LAST_FILE, out / BEST_FILE
    fingerprint = {"train": _data_fingerprint(train_seqs), "synthetic": _data_fingerprint(syn_seqs)}
    torch.manual_seed(int(config.seed))
    model = build_model(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    sampling_iters = (
        config.iterations // 2 if config.sampling_iterations is None else int(config.sampling_iterations)
    )

    iteration, elapsed_before, changed_settings = 0, 0.0, []
    best = {"iteration": None, "metric": config.best_metric, "value": None, "scores": None}
    if config.init_from and state is None:
        from .checkpoint import read_checkpoint

        tensors, init_config, _ = read_checkpoint(config.init_from)
        if init_config.to_dict() != model_config.to_dict():
            raise NowcastError(
                f"--init-from has another architecture ({init_config.to_dict()}); give the same "
                "--backbone/--layers/--hidden/--kernel/--patch", config.init_from
            )
        model.load_state_dict(tensors)
    if state is not None:
        if state["model_config"] != model_config.to_dict():
            raise NowcastError(
                "the model settings differ from the run being resumed "
                f"(saved: {state['model_config']})", state_path
            )
        if state["data"] != fingerprint:
            raise NowcastError(
                "the training data differ from the run being resumed (same files and options needed "
                "for an exact resume)", state_path
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        iteration = int(state["iteration"])
        elapsed_before = float(state.get("train_time_s", 0.0))
        best = dict(state["best"])
        best["scores"] = json.loads(best["scores"]) if best.get("scores") else None
        saved = json.loads(state.get("settings", "{}"))
        changed_settings = sorted(
            k for k, v in config.settings().items()
            if k not in ("resume", "overwrite") and saved.get(k, v) != v
        )
    start_iteration = iteration
    if state is None and team.is_main:
        # a fresh run over an old one (overwrite): nothing of the old run may be mistaken for this one's
        for p in (state_path, last_path, best_path):
            if p.exists():
                p.unlink()
    log = _Log(out, config.val_thresholds, start_iteration if state is not None else None) if team.is_main else None
    if team.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # DDP copies process 0's weights to the others at construction
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        train_model = model

    meta_base = {"settings": config.settings(), "training_data": [n for n, _ in train_seqs] + [n for n, _ in syn_seqs],
                 "validation_data": [n for n, _ in val_seqs]}

    def export(path: Path, extra: dict) -> None:
        if not team.is_main:
            return
        save_checkpoint(path, model, model_config, _json_safe({**meta_base, "iteration": iteration, **extra}))

    def save_state() -> None:
        if not team.is_main:
            return
        # the state (weights included) first: it alone is what resume needs
        _atomic_torch_save(
            {
                "version": STATE_VERSION,
                "iteration": iteration,
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "model_config": model_config.to_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "sampler": sampler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "best": {**best, "scores": json.dumps(_json_safe(best["scores"])) if best["scores"] else ""},
                "train_time_s": elapsed_before + (time.perf_counter() - t_loop),
                "settings": json.dumps(config.settings()),
                "data": fingerprint,
            },
            state_path,
        )
        export(last_path, {"kind": "last"})

    if state is not None:
        # a kill between the two writes leaves last.safetensors one checkpoint behind: bring it up to date
        export(last_path, {"kind": "last"})

    # ---- interruption: Ctrl-C (or SIGTERM, which torchrun and batch schedulers send) finishes the current
    # iteration, then saves and stops. In a team the flag is summed over processes each iteration, so all
    # stop after the same iteration.
    stop = {"flag": False, "agreed": False}
    old_handlers, handler_installed = {}, False
    if threading.current_thread() is threading.main_thread():
        def _on_signal(signum, frame):
            stop["flag"] = True
            # a second signal stops at once
            for sig, old in old_handlers.items():
                signal.signal(sig, old if old is not None else signal.default_int_handler)

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, _on_signal)
        handler_installed = True
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    def emit(kind, **kw):
        if callback is None:
            return
        try:
            callback(ProgressEvent(kind=kind, iteration=iteration, total=config.iterations,
                                   start_iteration=start_iteration, **kw))
        except KeyboardInterrupt:
            if not team.enabled or kind == "end":
                raise
            stop["flag"] = True  # the others learn of it at the next iteration's sum

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    status = "completed"
    last_val = None
    consistent = True  # False while an optimizer step is half done
    loss_sum, loss_n, t_log = 0.0, 0, time.perf_counter()
    t_loop = t_prev = time.perf_counter()
    it_rate = None
    note = None
    try:
        emit("start", message=f"training on {device.type}" + (f" ({amp_dtype})".replace("torch.", "") if amp_dtype else "")
             + (f", resumed at iteration {iteration}" if start_iteration else ""))
        model.train()
        share = team.share(config.batch_size)
        while iteration < config.iterations:
            if stop["agreed"] if team.enabled else stop["flag"]:
                raise KeyboardInterrupt
            batch = sampler.sample_batch(config.batch_size)  # the global batch, the same in every process
            lr = learning_rate(iteration, config)
            p_truth = truth_probability(iteration, sampling_iters)
            smask = sampling_mask(config.seed, iteration, config.batch_size, config.n_out - 1, p_truth)
            valid_pixels = float(batch["mask"].sum())
            x = torch.from_numpy(batch["inputs"][share]).to(device)
            y = torch.from_numpy(batch["targets"][share]).to(device)
            m = torch.from_numpy(batch["mask"][share]).to(device)
            sm = torch.from_numpy(smask[share]).to(device)
            consistent = False
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                pred = train_model(x, config.n_out, truth=y, sampling_mask=sm)
            loss = masked_loss(pred, y, m, config.loss, config.balanced_loss, config.balance_power,
                               denominator=valid_pixels if team.enabled else None)
            # DDP averages gradients over the processes; scaling by their number makes it the global sum
            scaler.scale(loss * team.world if team.enabled else loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            consistent = True

            loss_value = float(loss.detach())
            if team.enabled:
                loss_value, stops = distributed.sum_across(team, [loss_value, float(stop["flag"])], device)
                stop["agreed"] = stops > 0
            if not math.isfinite(loss_value):
                raise NowcastError(f"the training loss became {loss_value} at iteration {iteration}; "
                                   "try a lower learning rate or grad_clip")
            loss_sum += loss_value
            loss_n += 1
            now = time.perf_counter()
            step_rate = 1.0 / max(now - t_prev, 1e-9)
            t_prev = now
            it_rate = step_rate if it_rate is None else 0.9 * it_rate + 0.1 * step_rate

            row = None
            if iteration % config.log_every == 0 or iteration == config.iterations:
                row = {"iteration": iteration, "loss": loss_sum / loss_n, "lr": lr,
                       "it_per_s": loss_n / max(now - t_log, 1e-9), "truth_probability": p_truth,
                       "elapsed_s": elapsed_before + now - t_loop}
                loss_sum, loss_n, t_log = 0.0, 0, now

            if val_seqs and (iteration % config.val_every == 0 or iteration == config.iterations):
                if team.is_main:  # the others wait at the barrier
                    scores, full = _validate_model(model, model_config, val_seqs, config, device)
                    value = metric_value(_flat_scores(full), metric_terms)
                    scores = {"metric": value, **scores}
                    last_val = {"iteration": iteration, **scores}
                    row = row or {"iteration": iteration, "lr": lr, "truth_probability": p_truth,
                                  "elapsed_s": elapsed_before + time.perf_counter() - t_loop}
                    row.update({"val_metric": value, **{f"val_{k}": v for k, v in scores.items() if k != "metric"}})
                    old = best["value"]
                    improved = best["iteration"] is None or (
                        math.isfinite(value) and (old is None or not math.isfinite(old)
                                                  or (value > old if higher_better else value < old))
                    )
                    if improved:
                        best = {"iteration": iteration, "metric": config.best_metric, "value": value, "scores": scores}
                        export(best_path, {"kind": "best", "validation": scores})
                    emit("validation", scores={"metric": value, **scores})
                distributed.barrier(team)
                t_log = t_prev = time.perf_counter()  # validation time is not training speed
            if row is not None and log is not None:
                log.write(row)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                save_state()
                emit("checkpoint", message=f"checkpoint at iteration {iteration}")
            # last, so that an interruption raised by the callback finds this iteration complete
            emit("step", loss=loss_value, lr=lr, it_per_s=it_rate, truth_probability=p_truth,
                 eta_s=(config.iterations - iteration) / it_rate)
    except KeyboardInterrupt:
        status = "interrupted"
        if consistent:
            save_state()
            note = f"interrupted: saved a checkpoint at iteration {iteration}; resume to continue"
        else:
            note = "interrupted during an update: the last periodic checkpoint is kept"
    finally:
        if handler_installed:
            for sig, old in old_handlers.items():
                signal.signal(sig, old if old is not None else signal.default_int_handler)
        if config.deterministic:
            torch.use_deterministic_algorithms(old_deterministic)
        try:
            emit("end", message=note)
        except KeyboardInterrupt:
            pass

    saved_iteration = iteration if consistent else None
    return _json_safe({
        "status": status,
        "iterations": iteration,
        "saved_iteration": saved_iteration,
        "start_iteration": start_iteration,
        "target_iterations": config.iterations,
        "wall_time_s": time.perf_counter() - t_wall,
        "train_time_s": elapsed_before + time.perf_counter() - t_loop,
        "device": str(device),
        "rank": team.rank,
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        "best": best,
        "last_validation": last_val,
        "paths": {
            "out": str(out),
            "last": str(last_path),
            "best": str(best_path) if best_path.exists() else None,
            "state": str(state_path),
            "log_csv": str(out / LOG_CSV),
            "log_jsonl": str(out / LOG_JSONL),
        },
        "data": {"train": [n for n, _ in train_seqs], "synthetic": [n for n, _ in syn_seqs],
                 "val": [n for n, _ in val_seqs], "unsplit": unsplit},
        "changed_settings": changed_settings,
        "message": note,
    })


def _json_safe(obj):
    """NaN -> None throughout, so the summary writes as strict JSON (undefined scores are null)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
