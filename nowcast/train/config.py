"""The settings of a training run: one nested, validated dataclass, from code, a TOML file or the command line.

``TrainConfig`` groups the settings by what they change:

- ``model``: the network (``nowcast.nn.ModelConfig``); its input/output frame counts are the run's.
- ``data``: how training windows are cut and augmented (``nowcast.data.SamplerConfig``); its ``n_in``,
  ``n_out`` and ``synthetic_fraction`` follow ``model`` and ``synthetic`` and are not set here.
- ``synthetic``: synthetic radar mixed into the samples.
- ``optim``: loss, optimiser, schedules, seed.
- ``validation``: where and how often to validate, and the score that picks the best checkpoint.
- ``run``: the output folder, device, precision, checkpoint and log cadence, resume.

The data (opened radar sequences) is not a setting: it goes to ``train(config, sequences, ...)``.

Settings are changed with dotted keys (``config.override({"optim.lr": 1e-3})``); short flat names
(``lr``, ``num_layers``, ``val_every`` ...: ``FLAT_NAMES``) are accepted as well, by ``from_flat``, ``override``,
``--set`` and TOML files.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import SamplerConfig, parse_time_range
from ..errors import NowcastError
from ..nn import backbones
from ..nn.config import ModelConfig
from ..runtime import normalize_precision
from .objectives import LOSSES, LR_SCHEDULES, parse_metric

SECTIONS = ("model", "data", "synthetic", "optim", "validation", "run")
# sampler fields that other sections decide
_DERIVED_DATA_FIELDS = ("n_in", "n_out", "synthetic_fraction")
# tuple-valued settings (TOML and JSON give lists)
_TUPLES = {"data.coarsen_factors", "data.time_strides", "validation.thresholds", "validation.baselines"}


def _bad(msg: str):
    raise NowcastError(f"invalid training settings: {msg}")


def _positive_ints(obj, names) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            _bad(f"{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic radar (``nowcast.synthetic``) mixed into training: ``fraction`` of the samples."""

    fraction: float = 0.0
    sequences: int = 4
    frames: int = 48
    size: int = 128
    motion: str = "mixed"
    step_minutes: float = 5.0

    def __post_init__(self):
        if not 0.0 <= self.fraction <= 1.0:
            _bad(f"synthetic fraction must lie in [0, 1], got {self.fraction}")
        _positive_ints(self, ("sequences", "frames", "size"))


@dataclass(frozen=True)
class OptimConfig:
    """The paper's recipe by default: L1 + L2 loss, Adam at 3e-4, batch 8, scheduled sampling over half the run."""

    iterations: int = 100_000
    batch_size: int = 8  # the global batch (split over the processes of a team)
    lr: float = 3e-4
    lr_schedule: str = "constant"  # constant | cosine
    warmup: int = 0  # iterations of linear warm-up from 0
    min_lr: float = 0.0  # end of the cosine schedule
    grad_clip: float | None = None  # max global gradient norm; None = no clipping (paper)
    loss: str = "l1+l2"  # l1 | l2 | l1+l2
    balanced_loss: bool = False  # heavy-echo weighting (HKO-7 weights on the target dBZ)
    balance_power: float = 1.0  # the HKO-7 weights raised to this power: 0.5 is a milder weighting
    balance_on: str = "target"  # target | both: weights from the larger of forecast and truth (false alarms cost)
    soft_csi: float = 0.0  # weight of the soft-CSI term at 30 and 40 dBZ (0 = off)
    gdl: float = 0.0  # weight of the gradient difference loss term (0 = off)
    sampling_iterations: int | None = None  # truth-feeding probability 1 -> 0 over these; None = half the run
    seed: int = 0

    def __post_init__(self):
        _positive_ints(self, ("iterations", "batch_size"))
        if not self.lr > 0:
            _bad(f"lr must be positive, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            _bad(f"lr_schedule must be {' or '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.warmup < 0:
            _bad(f"warmup must be >= 0, got {self.warmup}")
        if not 0.0 <= self.min_lr <= self.lr:
            _bad(f"min_lr must lie in [0, lr], got {self.min_lr}")
        if self.loss not in LOSSES:
            _bad(f"loss must be l1, l2 or l1+l2, got {self.loss!r}")
        if self.balance_on not in ("target", "both"):
            _bad(f"balance_on must be target or both, got {self.balance_on!r}")
        if not self.soft_csi >= 0:
            _bad(f"soft_csi must be >= 0, got {self.soft_csi}")
        if not self.gdl >= 0:
            _bad(f"gdl must be >= 0, got {self.gdl}")
        if not 0.0 < self.balance_power <= 1.0:
            _bad(f"balance_power must lie in (0, 1], got {self.balance_power}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            _bad(f"grad_clip must be positive (or none), got {self.grad_clip}")

    @property
    def truth_iterations(self) -> int:
        """Length of scheduled sampling (half the run unless set)."""
        return self.iterations // 2 if self.sampling_iterations is None else int(self.sampling_iterations)


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out sequences go to ``train``; here: split-offs, cadence, and the score that picks the best weights."""

    fraction: float = 0.0  # validate on the last fraction of each training sequence
    time: str | None = None  # or: "START/END" (ISO 8601); frames in that range validate, the rest trains
    every: int = 1000
    stride: int = 1
    batch_size: int = 8
    thresholds: tuple = (30.0, 40.0, 50.0)
    metric: str = "csi30+csi40"  # pooled over windows and leads, on the full grid
    baselines: tuple = ("persistence", "extrapolation")  # scored once per run on the same windows

    def __post_init__(self):
        _positive_ints(self, ("every", "stride", "batch_size"))
        if not 0.0 <= self.fraction < 1.0:
            _bad(f"validation fraction must lie in [0, 1), got {self.fraction}")
        if self.time and self.fraction > 0:
            _bad("give a validation fraction or a validation time range, not both")
        if self.time:
            parse_time_range(self.time)
        parse_metric(self.metric)


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/model"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (nowcast.runtime)
    deterministic: bool = False  # torch.use_deterministic_algorithms during the run
    checkpoint_every: int = 1000
    log_every: int = 50
    resume: bool = False
    init_from: str | None = None  # start a fresh run from these weights (same architecture)
    overwrite: bool = False  # allow starting afresh in a folder that holds a run
    loader_workers: int | None = None  # processes drawing the samples; None = auto (train.loader.resolve_workers)
    # a Lagrangian run's optical flow of its windows (keyed by content, so runs on one archive can share the
    # folder); None = the run folder's motion_cache
    motion_cache: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "out", str(self.out))
        if self.motion_cache is not None:
            object.__setattr__(self, "motion_cache", str(self.motion_cache))
        object.__setattr__(self, "precision", normalize_precision(self.precision))
        _positive_ints(self, ("checkpoint_every", "log_every"))
        w = self.loader_workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
            _bad(f"loader_workers must be a whole number, 0 or more (0: samples drawn in the training process), "
                 f"got {w!r}")


def _default_sampler() -> SamplerConfig:
    # training augments more than SamplerConfig's neutral defaults: 2x coarsening, 1-3x speed
    return SamplerConfig(coarsen_factors=(1, 2), time_strides=(1, 2, 3))


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (see the module docstring)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: SamplerConfig = field(default_factory=_default_sampler)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        # the sampler's frame counts and coordinate frame are the model's: one place to set them
        data = dataclasses.replace(self.data, n_in=int(self.model.input_frames),
                                   n_out=int(self.model.output_frames), frame=self.model.frame,
                                   advection=self.model.advection)
        data.validate()
        object.__setattr__(self, "data", data)
        if self.data.crop % self.model.patch_size:
            _bad(f"crop {self.data.crop} is not a multiple of the patch size {self.model.patch_size}")
        if self.model.motion and self.model.num_layers < 2:
            # without this check one layer would silently train a plain backbone
            _bad("motion needs at least 2 layers (the MotionGRU sits between layers); "
                 "give 2 or more layers, or turn motion off")

    # -- conversions ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The settings as nested plain JSON types (stored with checkpoints and the training state)."""
        out = {}
        for name in SECTIONS:
            section = getattr(self, name)
            d = section.to_dict() if name == "model" else dataclasses.asdict(section)
            if name == "data":
                d = {k: v for k, v in d.items() if k not in _DERIVED_DATA_FIELDS}
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return out

    def flat(self) -> dict:
        """{"section.key": value} of every setting."""
        return {f"{s}.{k}": v for s, d in self.to_dict().items() for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From ``to_dict()`` output: a table per section."""
        unknown = sorted(k for k, v in d.items() if k not in SECTIONS or not isinstance(v, dict))
        if unknown:
            raise NowcastError(f"unknown training settings section(s) {', '.join(unknown)}; "
                               f"known: {', '.join(SECTIONS)}")
        return cls().override({f"{s}.{k}": v for s, sub in d.items() for k, v in sub.items()})

    @classmethod
    def from_flat(cls, **settings) -> "TrainConfig":
        """From flat names (``lr=1e-3, num_layers=2, val_every=10``) or dotted keys."""
        return cls().override(settings)

    def override(self, changes: dict[str, Any]) -> "TrainConfig":
        """A copy with these settings changed; keys are dotted (``optim.lr``) or flat names (``lr``)."""
        by_section: dict[str, dict] = {}
        for key, value in changes.items():
            dotted = _dotted(key)
            section, name = dotted.split(".", 1)
            by_section.setdefault(section, {})[name] = tuple(value) if dotted in _TUPLES else value
        model = by_section.get("model", {})
        if "motion" not in model and backbones.is_standalone(model.get("backbone", self.model.backbone)):
            # a stand-alone network (TrajGRU, Conv-TT-LSTM) has no MotionRNN form: motion is off unless
            # asked for, and then ModelConfig refuses it with the backbone's name
            model["motion"] = False
        if "motion" in model and "highway" not in model:
            # motion off means the plain backbone: the Motion Highway goes with the MotionGRU
            model["highway"] = bool(model["motion"])
        parts = {s: _replace_section(s, getattr(self, s), by_section[s]) for s in by_section}
        return dataclasses.replace(self, **parts)


# Named recipes (`nowcast train --preset`), as changes to TrainConfig(), whose own defaults are the paper's.
# "default": the recipe of the shipped default model (models/motionrnn-lagrangian-radar.md): a Lagrangian
# MotionRNN, 3 layers x 32 channels, 3x3 kernels, 4x4 patches, 64-pixel crops, frame strides 1 and 2; L1 + L2
# with HKO-7 weights^0.5 from forecast and truth plus 0.5 soft CSI; Adam 3e-4 cosine to 3e-5 over 2,000
# iterations after 100 of warm-up, gradient clip 1, no scheduled sampling, precision auto (bf16 on a GPU
# and on a CPU with native bf16, fp32 on other CPUs: the shipped model was trained in bf16).
# "paper": the paper's radar network and recipe (Wu et al. 2021): Eulerian, 4 layers x 64, 5x5 kernels,
# L1 + L2, Adam 3e-4, 100,000 iterations with scheduled sampling.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "model.frame": "lagrangian", "model.residual": True, "model.num_layers": 3, "model.hidden": 32,
        "model.kernel_size": 3, "model.patch_size": 4,
        "data.crop": 64, "data.coarsen_factors": (1, 2), "data.time_strides": (1, 2),
        "optim.iterations": 2000, "optim.lr": 3e-4, "optim.lr_schedule": "cosine", "optim.warmup": 100,
        "optim.min_lr": 3e-5, "optim.grad_clip": 1.0, "optim.balanced_loss": True, "optim.balance_power": 0.5,
        "optim.balance_on": "both", "optim.soft_csi": 0.5, "optim.sampling_iterations": 0,
        "validation.every": 250, "validation.stride": 4, "run.checkpoint_every": 250, "run.log_every": 25,
        "run.precision": "auto",
    },
    "paper": {},
}


def preset(name: str) -> TrainConfig:
    """The settings of a named recipe (``PRESETS``)."""
    if name not in PRESETS:
        raise NowcastError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return TrainConfig().override(PRESETS[name])


# settings a resumed run may change: how long, how often, where it runs; never what it learns
SAFE_ON_RESUME = frozenset({
    "optim.iterations", "validation.every", "validation.stride", "validation.batch_size", "validation.baselines",
    "run.checkpoint_every", "run.loader_workers", "run.motion_cache",
    "run.log_every", "run.device", "run.precision", "run.deterministic", "run.resume", "run.overwrite", "run.out",
})


_INTERNAL = {"run.resume", "run.overwrite", "run.out"}


def resumed(saved: dict, changes: dict[str, Any]) -> "TrainConfig":
    """The settings of a run being resumed (``saved``: its ``TrainConfig.to_dict()``) with ``changes``
    applied; NowcastError naming the first change that a resume cannot make."""
    base = TrainConfig.from_dict(saved)
    before = base.flat()
    candidate = base.override(changes).flat()
    for key, value in candidate.items():
        if key not in SAFE_ON_RESUME and value != before.get(key, value):
            raise NowcastError(
                f"a resumed run keeps its settings: {key} is {before.get(key)!r} in the run, not {value!r} "
                f"(a resume may change only {', '.join(sorted(SAFE_ON_RESUME - _INTERNAL))})"
            )
    return base.override({**changes, "run.resume": True})


def _replace_section(name: str, section, changes: dict):
    if name == "model":
        return ModelConfig.from_dict({**section.to_dict(), **changes})
    known = {f.name for f in dataclasses.fields(section)}
    unknown = sorted(set(changes) - known - ({"n_in", "n_out"} if name == "data" else set()))
    if name == "data" and "synthetic_fraction" in changes:
        unknown.append("synthetic_fraction (set synthetic.fraction)")
    if unknown:
        raise NowcastError(f"unknown setting(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                           f"known in [{name}]: {', '.join(sorted(known - set(_DERIVED_DATA_FIELDS)))}")
    try:
        return dataclasses.replace(section, **changes)
    except TypeError as exc:
        _bad(f"[{name}]: {exc}")


# flat names -> dotted keys: a setting's short spelling in code (``TrainConfig.from_flat(lr=1e-3)``), in --set
# and in TOML files: its field name, with val_ or synthetic_ in front in those sections ("amp": the older name of
# run.precision). The command line's options name their dotted keys themselves (cli/train.py's OPTIONS).
FLAT_NAMES = {
    **{k: f"run.{k}" for k in ("out", "device", "precision", "deterministic", "checkpoint_every", "log_every",
                               "resume", "init_from", "overwrite", "loader_workers", "motion_cache")},
    "amp": "run.precision",
    **{f"val_{k}": f"validation.{k}" for k in ("fraction", "time", "every", "stride", "batch_size", "thresholds",
                                                 "baselines")},
    "best_metric": "validation.metric",
    **{f"synthetic_{k}": f"synthetic.{k}" for k in ("fraction", "sequences", "frames", "size", "motion",
                                                    "step_minutes")},
    **{k: f"model.{k}" for k in ("backbone", "motion", "highway", "num_layers", "hidden", "kernel_size",
                                 "patch_size", "residual", "frame", "growth_cap_dbz", "growth_cap_radius", "advection")},
    "n_in": "model.input_frames", "n_out": "model.output_frames",
    "input_frames": "model.input_frames", "output_frames": "model.output_frames",
    **{k: f"data.{k}" for k in ("crop", "coarsen_factors", "time_strides", "flips", "echo_threshold",
                                "min_echo_fraction", "dry_keep_probability", "min_valid_fraction", "max_tries",
                                "intensity_offset_db")},
    **{k: f"optim.{k}" for k in ("iterations", "batch_size", "lr", "lr_schedule", "warmup", "min_lr", "grad_clip",
                                 "loss", "balanced_loss", "balance_power", "balance_on", "soft_csi", "gdl",
                                 "sampling_iterations", "seed")},
}


def _dotted(key: str) -> str:
    """A setting's dotted key (``optim.lr``), from itself or a flat name (``lr``); NowcastError if unknown."""
    if "." in key:
        section, name = key.split(".", 1)
        if section not in SECTIONS:
            raise NowcastError(f"unknown setting {key!r}: sections are {', '.join(SECTIONS)}")
        known = _known_fields(section)
        if name not in known:
            raise NowcastError(f"unknown setting {key!r}; known in [{section}]: {', '.join(sorted(known))}")
        return key
    if key not in FLAT_NAMES:
        raise NowcastError(f"unknown setting {key!r}; use section.key (sections: {', '.join(SECTIONS)})")
    return FLAT_NAMES[key]


def _known_fields(section: str) -> set[str]:
    default = getattr(TrainConfig(), section)
    names = {f.name for f in dataclasses.fields(default)}
    return names - set(_DERIVED_DATA_FIELDS) if section == "data" else names


def load_toml(path) -> dict[str, Any]:
    """The settings of a TOML file as dotted keys: tables [model], [data], [optim] ... and/or flat names."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NowcastError("settings file not found", path) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NowcastError(f"cannot read the settings file: {exc}", path) from None
    changes = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key in SECTIONS:
            changes.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            changes[key] = value
    try:
        for key in changes:
            _dotted(key)
    except NowcastError as exc:
        raise NowcastError(str(exc), path) from None
    return changes
