"""Training: radar sequences -> a MotionRNN / PredRNN checkpoint (the paper's recipe and a few options).

Paper recipe (Wu et al. 2021): L1 + L2 loss, Adam at lr 3e-4, batch 8, scheduled sampling of
ground-truth frames. Options beyond it: heavy-echo loss weighting (HKO-7 "balanced" weights), a
cosine schedule with warm-up, mixed precision (bf16 on CPU or GPU, fp16 on GPU), and augmentation
(see ``nowcast.data``).

Modules: ``config`` (the nested settings, TOML), ``objectives`` (loss, schedules, the validation
metric), ``state`` (the resumable training state), ``trainer`` (the loop), ``callbacks`` (progress
events, best checkpoint, logs), ``validation`` (model and baselines on the same windows), ``datasets``
(naming, synthetic data, validation split, time step), ``signals`` (Ctrl-C / SIGTERM as a stop flag).
"""

from .callbacks import LOG_CSV, LOG_JSONL, BestCheckpoint, ProgressEvent, TrainLog
from .config import (FLAT_NAMES, SECTIONS, OptimConfig, RunConfig, SyntheticConfig, TrainConfig, ValidationConfig,
                     load_toml)
from .objectives import (balance_thresholds_dbz, balanced_weights, learning_rate, masked_loss, metric_value,
                         parse_metric, sampling_mask, truth_probability)
from .signals import StopSignals
from .state import STATE_FILE, STATE_VERSION, TrainState, load_train_state
from .trainer import BEST_FILE, LAST_FILE, Trainer, train

__all__ = [
    "BEST_FILE", "FLAT_NAMES", "LAST_FILE", "LOG_CSV", "LOG_JSONL", "SECTIONS", "STATE_FILE", "STATE_VERSION",
    "BestCheckpoint", "OptimConfig", "ProgressEvent", "RunConfig", "StopSignals", "SyntheticConfig",
    "TrainConfig", "TrainLog", "TrainState", "Trainer", "ValidationConfig", "balance_thresholds_dbz",
    "balanced_weights", "learning_rate", "load_toml", "load_train_state", "masked_loss", "metric_value",
    "parse_metric", "sampling_mask", "train", "truth_probability",
]
