"""`nowcast train`: train a network on a radar archive.

The options are a table (``OPTIONS``): each maps one command-line option onto one setting of
``nowcast.train.TrainConfig`` (dotted key). Only the options a user gives change a setting, in this
order: the defaults (or, with --resume, the run's own settings), then ``--config run.toml``, then
``--set KEY=VALUE``, then the named options.
"""

from __future__ import annotations

import inspect
import json
import math
import tomllib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ..errors import NowcastError
from ..nn import backbones
from .common import app, note, out, pop_reading, reading_parameters


# the choices come from the network registry, so a new backbone needs no change here
Backbone = Enum("Backbone", {name: name for name in backbones.names()}, type=str)


class Loss(str, Enum):
    l1 = "l1"
    l2 = "l2"
    l1_l2 = "l1+l2"


class LRSchedule(str, Enum):
    constant = "constant"
    cosine = "cosine"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    off = "off"  # the older name of fp32


class Frame(str, Enum):
    eulerian = "eulerian"
    lagrangian = "lagrangian"


class Advection(str, Enum):
    bilinear = "bilinear"
    nearest = "nearest"


def _ints(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise NowcastError(f"{text!r} must be whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise NowcastError(f"{text!r} must list positive whole numbers")
    return values


def _floats(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise NowcastError(f"{text!r} must be numbers separated by commas") from None


def _names(text: str) -> tuple:
    return tuple(v.strip() for v in text.split(",") if v.strip() and v.strip() != "none")


@dataclass(frozen=True)
class Opt:
    """One option: its flags, the setting it sets, its type, and how text becomes the setting's value."""

    flags: tuple
    key: str
    type: Any
    help: str
    convert: Callable | None = None
    shown_as: str | None = None  # the metavar, where the type's is not telling (a folder)

    @property
    def metavar(self) -> str | None:
        """Plain metavars instead of <int>/<str> noise; Enums and flags show their choices."""
        if self.shown_as is not None:
            return self.shown_as
        if self.convert is not None:
            return "LIST"
        return {int: "N", float: "NUMBER", str: "TEXT"}.get(self.type)

    @property
    def param(self) -> str:
        return self.flags[0].split("/")[0].lstrip("-").replace("-", "_")


OPTIONS = (
    # validation
    Opt(("--val-fraction",), "validation.fraction", float, "Validate on the last fraction of each sequence."),
    Opt(("--val-time",), "validation.time", str, "Or validate on the frames in START/END (ISO 8601, e.g. "
                                                 "2020-10-31T12:00/2020-10-31T18:00)."),
    Opt(("--val-every",), "validation.every", int, "Validate every N iterations."),
    Opt(("--val-stride",), "validation.stride", int, "Use every N-th validation window."),
    Opt(("--val-batch-size",), "validation.batch_size", int, "Validation batch size."),
    Opt(("--val-thresholds",), "validation.thresholds", str, "CSI/POD/FAR thresholds (dBZ), e.g. 30,40,50.",
        _floats),
    Opt(("--best-metric",), "validation.metric", str, "Score that picks best.safetensors, e.g. csi30+csi40.")
    ,
    Opt(("--baselines",), "validation.baselines", str, "Baselines scored beside the model (or none).", _names),
    # synthetic data
    Opt(("--synthetic-fraction",), "synthetic.fraction", float, "Share of samples drawn from synthetic radar."),
    Opt(("--synthetic-sequences",), "synthetic.sequences", int, "Number of synthetic sequences."),
    Opt(("--synthetic-frames",), "synthetic.frames", int, "Frames per synthetic sequence."),
    Opt(("--synthetic-size",), "synthetic.size", int, "Synthetic grid size (pixels)."),
    # model
    Opt(("--backbone",), "model.backbone", Backbone, "Recurrent block, or a stand-alone baseline (trajgru, "
                                                     "convttlstm: no motion; --layers counts their levels/blocks)."),
    Opt(("--motion/--no-motion",), "model.motion", bool, "MotionGRU + Motion Highway on or off (needs 2+ layers; "
                                                         "off for stand-alone backbones)."),
    Opt(("--layers",), "model.num_layers", int, "Recurrent layers."),
    Opt(("--hidden",), "model.hidden", int, "Hidden channels per layer."),
    Opt(("--kernel",), "model.kernel_size", int, "Convolution kernel size (odd)."),
    Opt(("--patch",), "model.patch_size", int, "Patch size (frames are folded into p x p patches)."),
    Opt(("--input-frames",), "model.input_frames", int, "Input frames."),
    Opt(("--lead-frames",), "model.output_frames", int, "Forecast frames."),
    Opt(("--residual/--no-residual",), "model.residual", bool, "Forecast the change from the last frame "
                                                               "(starts as persistence; not in the paper)."),
    Opt(("--frame",), "model.frame", Frame, "Eulerian grid, or Lagrangian (optical flow carries the motion)."),
    Opt(("--advection",), "model.advection", Advection, "Lagrangian frame: sample frames moved along the flow "
                                                        "bilinearly (smooths narrow heavy cores) or at the nearest "
                                                        "pixel (keeps every value)."),
    Opt(("--growth-cap",), "model.growth_cap_dbz", float, "Hold every forecast pixel at or below the last frame's "
                                                          "local maximum plus this many dBZ (bounded growth)."),
    Opt(("--growth-cap-radius",), "model.growth_cap_radius", int, "Pixels either side over which --growth-cap "
                                                                  "takes the local maximum."),
    # samples
    Opt(("--crop",), "data.crop", int, "Random crop size (pixels)."),
    Opt(("--coarsen",), "data.coarsen_factors", str, "Coarsening factors to sample from, e.g. 1,2.", _ints),
    Opt(("--time-strides",), "data.time_strides", str, "Frame strides (speed augmentation), e.g. 1,2,3.", _ints),
    Opt(("--flips/--no-flips",), "data.flips", bool, "Random rotations and flips."),
    Opt(("--echo-dbz",), "data.echo_threshold", float, "A pixel at or above this counts as echo."),
    Opt(("--min-echo-fraction",), "data.min_echo_fraction", float, "Crops with less echo are dry."),
    Opt(("--dry-keep-probability",), "data.dry_keep_probability", float, "Share of dry crops kept."),
    Opt(("--intensity-offset",), "data.intensity_offset_db", float, "Shift each sample's echo by a random offset "
                                                                   "of up to this many dB (climate augmentation)."),
    # optimisation
    Opt(("--iterations",), "optim.iterations", int, "Training iterations (in all, over resumes)."),
    Opt(("--batch-size",), "optim.batch_size", int, "Global batch size (split over torchrun processes)."),
    Opt(("--lr",), "optim.lr", float, "Learning rate (Adam)."),
    Opt(("--lr-schedule",), "optim.lr_schedule", LRSchedule, "Learning-rate schedule."),
    Opt(("--warmup",), "optim.warmup", int, "Iterations of linear warm-up."),
    Opt(("--min-lr",), "optim.min_lr", float, "End of the cosine schedule."),
    Opt(("--grad-clip",), "optim.grad_clip", float, "Clip the global gradient norm (0: no clipping)."),
    Opt(("--loss",), "optim.loss", Loss, "Loss on the [0, 1] scale (the paper: l1+l2)."),
    Opt(("--balanced-loss/--no-balanced-loss",), "optim.balanced_loss", bool, "Weight heavy echoes (HKO-7)."),
    Opt(("--balance-power",), "optim.balance_power", float, "Raise the HKO-7 weights to this power (0.5: milder)."),
    Opt(("--balance-on",), "optim.balance_on", str, "Heavy-echo weights from the target, or from both forecast "
                                                    "and target (false alarms cost too)."),
    Opt(("--soft-csi",), "optim.soft_csi", float, "Weight of a differentiable CSI term at 30 and 40 dBZ."),
    Opt(("--gdl",), "optim.gdl", float, "Weight of a gradient difference loss term (sharpness as the truth's)."),
    Opt(("--sampling-iterations",), "optim.sampling_iterations", int, "Scheduled sampling length."),
    Opt(("--seed",), "optim.seed", int, "Random seed."),
    # run
    Opt(("--device",), "run.device", str, "auto (CUDA when present), cpu, cuda or cuda:N."),
    Opt(("--precision", "--amp"), "run.precision", Precision, "Arithmetic: bf16 (CPU or GPU), fp16 (GPU), fp32; "
                                                              "auto = bf16/fp16 on a GPU; on a CPU bf16 where it "
                                                              "has native bf16 (AVX512-BF16 or AMX), else fp32."),
    Opt(("--deterministic/--no-deterministic",), "run.deterministic", bool, "Deterministic torch kernels."),
    Opt(("--checkpoint-every",), "run.checkpoint_every", int, "Save the training state every N iterations."),
    Opt(("--log-every",), "run.log_every", int, "Write a log row every N iterations."),
    Opt(("--loader-workers",), "run.loader_workers", int, "Processes that draw the training samples ahead of "
                                                          "each step (0: drawn by the training process when "
                                                          "needed). [default: 0 on a CPU, where they would take "
                                                          "its cores; on a GPU up to 4, one core per process "
                                                          "left free]"),
    Opt(("--motion-cache",), "run.motion_cache", str, "Folder for a Lagrangian run's optical flow, which runs on "
                                                     "the same archive can share (kept by content). [default: "
                                                     "motion_cache in --out]", shown_as="DIR"),
    Opt(("--init-from",), "run.init_from", str, "Start from these weights (a model name or file, same "
                                                "architecture)."),
)


def _default_text(key: str) -> str:
    from ..train.config import preset

    value = preset(DEFAULT_PRESET).flat().get(key)
    if isinstance(value, list):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return "" if value is None else f" [default: {value}]"


def _parameters() -> list[inspect.Parameter]:
    """The command's parameters: the fixed ones, then one per row of OPTIONS (all default None: unset)."""
    kw = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        ("data", List[Path], typer.Argument(..., metavar="RADAR_FILE", help="Training radar files; each file (or quoted glob) is one "
                                                      "sequence.")),
        ("out_dir", Path, typer.Option(..., "--out", metavar="FOLDER", help="Folder for checkpoints and logs (created with its "
                                                          "parents).")),
        ("config_file", Optional[Path], typer.Option(None, "--config", metavar="FILE.toml", help="Settings from a TOML file: tables "
                                                     "[model] [data] [synthetic] [optim] [validation] [run].")),
        ("settings", Optional[List[str]], typer.Option(None, "--set", metavar="KEY=VALUE",
                                                       help="Any setting, e.g. --set optim.min_lr=1e-5 "
                                                            "(value in TOML syntax).")),
        ("val", Optional[List[Path]], typer.Option(None, "--val", metavar="FILE", help="Held-out validation file(s).")),
        ("preset", Optional[str], typer.Option(None, "--preset", metavar="default|paper",
                                               help="The recipe the other options change: default = that of the "
                                                    "shipped default model (Lagrangian MotionRNN, 3 x 32; "
                                                    "the defaults below); paper = the paper's network and recipe "
                                                    "(Eulerian, 4 x 64, 5x5 kernels, 100,000 iterations).")),
        ("resume", bool, typer.Option(False, "--resume", help="Continue the run in --out with its own settings.")),
        ("overwrite", bool, typer.Option(False, "--overwrite", help="Start afresh in a folder that holds a run "
                                                                    "(not with --resume).")),
    ]
    params = [inspect.Parameter(name, kw, default=default, annotation=ann) for name, ann, default in fixed]
    for opt in OPTIONS:
        option = typer.Option(None, *opt.flags, help=opt.help + _default_text(opt.key), show_default=False,
                              metavar=opt.metavar)
        params.append(inspect.Parameter(opt.param, kw, default=option, annotation=Optional[opt.type]))
    return params + reading_parameters(lazy=True)


def _parse_set(items) -> dict:
    """--set KEY=VALUE pairs; VALUE is read as TOML (1e-5, true, [1, 2], "text"), else as text."""
    changes = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise NowcastError(f"--set {item!r} must look like KEY=VALUE, e.g. optim.min_lr=1e-5")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        changes[key.strip()] = value
    return changes


def _given_options(kwargs: dict) -> dict:
    """The settings the named options set (only those given), as dotted keys."""
    changes = {}
    for opt in OPTIONS:
        value = kwargs.get(opt.param)
        if value is None:
            continue
        value = getattr(value, "value", value)
        changes[opt.key] = opt.convert(value) if opt.convert else value
    if changes.get("optim.grad_clip") == 0:
        changes["optim.grad_clip"] = None
    if changes.get("run.init_from"):
        from ..checkpoint import resolve_model_path

        changes["run.init_from"] = str(resolve_model_path(changes["run.init_from"]))
    if changes.get("model.frame") == "lagrangian" and "model.residual" not in changes:
        changes["model.residual"] = True  # a Lagrangian model forecasts changes: it starts as extrapolation
    return changes


DEFAULT_PRESET = "default"


def build_config(out_dir: Path, resume: bool, overwrite: bool, config_file=None, settings=None, given=None,
                 preset_name: str | None = None):
    """The run's TrainConfig: the preset (or, resuming, the run's own settings: the preset is not used), TOML
    file, --set, named options."""
    from ..train import load_toml
    from ..train.config import preset, resumed
    from ..train.state import STATE_FILE, load_train_state

    if resume and overwrite:
        raise NowcastError("--resume continues the run in --out and --overwrite starts it afresh: give one of them")
    changes = {**(load_toml(config_file) if config_file else {}), **_parse_set(settings), **(given or {})}
    changes.update({"run.out": str(out_dir), "run.overwrite": overwrite})
    if not resume:
        return preset(preset_name or DEFAULT_PRESET).override(changes)
    state = load_train_state(out_dir / STATE_FILE)
    config = resumed(json.loads(state.get("settings") or "{}"), changes)
    done = int(state.get("iteration", 0))
    if done >= config.optim.iterations:
        note(f"the run in {out_dir} is at iteration {done}, not below --iterations {config.optim.iterations}: "
             "nothing to train; give a larger --iterations to continue it")
    return config


def _train(**kwargs):
    """Train MotionRNN (or plain PredRNN / ConvLSTM) on your radar archive; resumable.

    RADAR_FILE: training radar files; each file (or quoted glob) is one sequence.

    By default the recipe of the shipped default model (--preset default: Lagrangian MotionRNN, 3 layers x 32,
    2,000 iterations, precision auto); --preset paper gives the paper's network and recipe. An iteration of a
    recipe like the default (batch 8, 64 x 64 crops) took about 3.6 s in fp32 on one core of a CPU without native
    bf16, where emulated bf16 took about 47 s; on a GPU it takes well under a second.

    --model RUN_FOLDER in predict, evaluate and visualize-trend uses a run's best checkpoint (else its last),
    named after the run.
    """
    from ..train import train as run_training

    config = build_config(kwargs["out_dir"], kwargs["resume"], kwargs["overwrite"], kwargs["config_file"],
                          kwargs["settings"], _given_options(kwargs), kwargs["preset"])
    reading = pop_reading(kwargs)
    sequences = [(str(p), reading.open([p])) for p in kwargs["data"]]
    val_sequences = [(str(p), reading.open([p])) for p in kwargs["val"] or []]
    summary = run_training(config, sequences, val_sequences, progress=RichProgress())
    if summary["rank"] == 0:  # under torchrun, one process reports
        out.print(summary_line(summary), markup=False, highlight=False)
    if summary["status"] == "interrupted":
        raise typer.Exit(130)


_train.__signature__ = inspect.Signature(_parameters())
train = app.command(
    "train",
    epilog="Examples:\n\n  nowcast train archive/*.nc --val held_out.nc --out runs/my-model --iterations 20000\n\n"
           "  nowcast train archive/*.nc --val held_out.nc --out runs/my-model --resume --iterations 40000\n\n"
           "  nowcast train archive/*.nc --out runs/m --config run.toml --set optim.min_lr=1e-5\n\n"
           "  torchrun --standalone --nproc_per_node 4 -m nowcast train archive/*.nc --out runs/m\n\n"
           "Under torchrun, each process drives one GPU (or CPU workers, with gloo) and --batch-size is "
           "the global batch, split evenly. --resume reads the architecture and recipe from the run; "
           "only how long, how often and where it runs may change.",
)(_train)


# ------------------------------------------------------------------------------- reporting


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "-"


def validation_line(ev) -> str:
    """'iteration 1000: metric 0.210 csi30 0.25 ... | persistence 0.170 | extrapolation 0.300'."""
    keys = [k for k in ev.scores if k == "metric" or k.startswith("csi") or k == "gdl"]
    text = f"iteration {ev.iteration}: " + ", ".join(f"{k} {_fmt(ev.scores[k])}" for k in keys)
    for name, scores in (ev.baselines or {}).items():
        text += f" | {name} {_fmt(scores.get('metric'))}"
    return text


def summary_line(summary: dict) -> str:
    best = summary.get("best") or {}
    text = (f"{summary['status']}: {summary['iterations']} iterations in {summary['wall_time_s']:.0f} s; "
            f"checkpoint {summary['paths']['last']}")
    if best.get("value") is not None:
        text += (f"; best {best.get('metric')} = {best['value']:.4f} at iteration {best.get('iteration')} "
                 f"({summary['paths']['best']})")
    verdicts = [f"{'ahead of' if ahead else 'behind'} {name}" for name, ahead in (summary.get("ahead_of") or {}).items()
                if ahead is not None]
    if verdicts:
        text += "; the model is " + ", ".join(verdicts)
    return text


class RichProgress:
    """The progress display of `nowcast train`: a rich bar with loss, it/s and time left. Loss and it/s are
    those of the latest log.csv row (means since the row before) once there is one, so the bar and the log
    agree; until then, the last iteration's loss and the recent speed, labelled as such."""

    def __init__(self, console=None):
        self.console = console or out
        self._progress = None
        self._task = None
        self._logged = None

    def __call__(self, ev) -> None:
        handler = getattr(self, f"_on_{ev.kind}", None)
        if ev.kind == "start" or self._progress is not None:
            if handler is not None:
                handler(ev)

    def _on_start(self, ev) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=ev.total, completed=ev.iteration, loss="-", speed="")
        if ev.message:
            self._progress.console.print(ev.message, markup=False)

    def _on_step(self, ev) -> None:
        if ev.logged is not None:
            self._logged = ev.logged
        if self._logged is not None:  # as in log.csv: means over the iterations of its latest row
            loss = f"{self._logged['loss']:.4f} (log.csv mean)"
            speed = f"{self._logged['it_per_s']:.3f} it/s"
        else:
            loss = f"{ev.loss:.4f} (last iteration)" if ev.loss is not None else "-"
            speed = f"{ev.it_per_s:.3f} it/s (recent)" if ev.it_per_s else ""
        self._progress.update(self._task, completed=ev.iteration, loss=loss, speed=speed)

    def _on_validation(self, ev) -> None:
        if ev.message:
            self._progress.console.print(f"note: {ev.message}", markup=False)
        if ev.scores:
            self._progress.console.print(validation_line(ev), markup=False)

    def _on_end(self, ev) -> None:
        if ev.message:
            self._progress.console.print(ev.message, markup=False)
        self._progress.stop()
        self._progress = None
