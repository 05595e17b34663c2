"""The run's sequences: names, synthetic radar, the validation split, and the data's time step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import parse_time_range, split_by_time_range, split_in_time
from ..errors import NowcastError
from ..timeaxis import regular_step
from ..synthetic import generate
from .config import TrainConfig


@dataclass
class RunData:
    """(name, DataArray in dBZ) pairs for training, synthetic training and validation."""

    train: list
    synthetic: list
    val: list
    unsplit: list = field(default_factory=list)  # training sequences too short to give a validation part

    def names(self) -> dict:
        return {"train": [n for n, _ in self.train], "synthetic": [n for n, _ in self.synthetic],
                "val": [n for n, _ in self.val], "unsplit": list(self.unsplit)}


def named(seqs, label: str) -> list[tuple[str, Any]]:
    """(name, sequence) pairs; bare sequences are named label0, label1 ..."""
    out = []
    for i, item in enumerate(seqs or ()):
        if isinstance(item, tuple) and len(item) == 2:
            out.append((str(item[0]), item[1]))
        else:
            out.append((f"{label}{i}", item))
    return out


def synthetic_sequences(config: TrainConfig) -> list[tuple[str, Any]]:
    """The run's synthetic sequences, each from a seed derived from the run's seed."""
    syn = config.synthetic
    out = []
    for i in range(int(syn.sequences)):
        seed = int(np.random.default_rng([int(config.optim.seed), 0x5E7, i]).integers(2**31 - 1))
        da = generate(n_frames=int(syn.frames), height=int(syn.size), width=int(syn.size), seed=seed,
                      step_minutes=syn.step_minutes, motion=syn.motion)
        out.append((f"synthetic{i}", da))
    return out


def prepare_data(config: TrainConfig, sequences, val_sequences) -> RunData:
    """Name the sequences, add synthetic ones, and split off the validation parts the settings ask for."""
    train = named(sequences, "sequence")
    val = named(val_sequences, "validation")
    syn = synthetic_sequences(config) if config.synthetic.fraction > 0 else []
    return split_off_validation(config, RunData(train, syn, val))


def split_off_validation(config: TrainConfig, data: RunData) -> RunData:
    """Move the validation part of each training sequence (the last fraction, or a time range) to the
    validation list."""
    v = config.validation
    gap = int(config.model.input_frames + config.model.output_frames)
    if v.fraction > 0:
        def split(da):
            tr, va = split_in_time(da, v.fraction, gap, min_val=gap)
            return [tr], va

        pools = ("train", "synthetic")
        what = (f"val_fraction {v.fraction}: no sequence is long enough to split into training and "
                f"validation parts ({gap} frames each, {gap} frames apart); give validation sequences instead")
    elif v.time:
        start, end = parse_time_range(v.time)

        def split(da):
            return split_by_time_range(da, start, end, gap, min_len=gap)

        pools = ("train",)  # synthetic sequences have made-up times
        what = f"validation time range {v.time}: no training sequence has {gap} frames in it"
    else:
        return data
    for pool in pools:
        kept = []
        for name, da in getattr(data, pool):
            parts, va = split(da)
            if va is None:
                data.unsplit.append(name)
            else:
                data.val.append((f"{name}[val]", va))
            kept += [(name if len(parts) == 1 else f"{name}[{k}]", p) for k, p in enumerate(parts)]
        setattr(data, pool, kept)
    if not any(name.endswith("[val]") for name, _ in data.val):
        raise NowcastError(what)
    return data


def step_minutes(seqs) -> float | None:
    """The regular time step (minutes) shared by all sequences; None when they differ or have no dates."""
    steps = set()
    for _, da in seqs:
        times = np.asarray(da["time"].values) if "time" in getattr(da, "coords", {}) else None
        if times is None or not np.issubdtype(times.dtype, np.datetime64):
            return None
        step = regular_step(times)
        if step is not None:
            steps.add(round(float(step / np.timedelta64(1, "s")) / 60.0, 6))
    return steps.pop() if len(steps) == 1 else None
