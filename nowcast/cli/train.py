"""`nowcast train`: train a network on a radar archive."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import NowcastError
from .common import (DEVICE, OFFSET, OVERWRITE, PRECISION, REDUCE, SCALE, SELECT, UNITS, VARIABLE, app, err,
                     _load_method, _open, out)


def _int_list(text: str, option: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise NowcastError(f"{option} {text!r} must be whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise NowcastError(f"{option} {text!r} must list positive whole numbers")
    return values


@app.command(epilog="Examples:\n\n  nowcast train archive/*.nc --val held_out.nc --out runs/my-model --iterations 20000\n\n"
                    "  nowcast train archive/*.nc --val held_out.nc --out runs/my-model --resume\n\n"
                    "  torchrun --standalone --nproc_per_node 4 -m nowcast train archive/*.nc --out runs/m\n\n"
                    "Under torchrun, each process drives one GPU (or CPU workers, with gloo) and --batch-size is "
                    "the global batch, split evenly.")
def train(
    data: List[Path] = typer.Argument(..., help="Training radar files; each file (or quoted glob) is one sequence."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for checkpoints and logs."),
    val: Optional[List[Path]] = typer.Option(None, "--val", help="Held-out validation file(s)."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", min=0.0, max=0.9,
                                       help="Or: validate on the last fraction of each sequence."),
    val_time: Optional[str] = typer.Option(None, "--val-time", metavar="START/END",
                                           help="Or: validate on the frames in this time range "
                                                "(ISO 8601, e.g. 2020-10-31T12:00/2020-10-31T18:00)."),
    synthetic_fraction: float = typer.Option(0.0, "--synthetic-fraction", min=0.0, max=1.0,
                                             help="Share of samples drawn from synthetic radar."),
    backbone: str = typer.Option("predrnn", "--backbone", help="predrnn or convlstm."),
    motion: bool = typer.Option(True, "--motion/--no-motion", help="MotionGRU + Motion Highway on or off."),
    layers: int = typer.Option(4, "--layers", min=1),
    hidden: int = typer.Option(64, "--hidden", min=1, help="Hidden channels per layer."),
    kernel: int = typer.Option(5, "--kernel", min=1),
    patch: int = typer.Option(4, "--patch", min=1),
    input_frames: int = typer.Option(5, "--input-frames", min=2),
    lead_frames: int = typer.Option(10, "--lead-frames", min=1),
    iterations: int = typer.Option(100_000, "--iterations", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    lr: float = typer.Option(3e-4, "--lr"),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant or cosine."),
    warmup: int = typer.Option(0, "--warmup", min=0),
    crop: int = typer.Option(64, "--crop", min=8, help="Random crop size (pixels)."),
    coarsen: str = typer.Option("1,2", "--coarsen", help="Coarsening factors to sample from."),
    time_strides: str = typer.Option("1,2,3", "--time-strides", help="Frame strides (speed augmentation)."),
    loss: str = typer.Option("l1+l2", "--loss", help="l1, l2 or l1+l2 (the paper)."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", min=0.0,
                                              help="Clip the global gradient norm (default: no clipping)."),
    echo_dbz: float = typer.Option(15.0, "--echo-dbz", help="A pixel at or above this counts as echo."),
    min_echo_fraction: float = typer.Option(0.02, "--min-echo-fraction", min=0.0, max=1.0,
                                            help="Crops with less echo are dry; 9 in 10 dry crops are redrawn."),
    balanced_loss: bool = typer.Option(False, "--balanced-loss", help="Weight heavy echoes (HKO-7)."),
    balance_power: float = typer.Option(1.0, "--balance-power", min=0.01, max=1.0,
                                        help="Raise the HKO-7 weights to this power (0.5: milder)."),
    residual: bool = typer.Option(False, "--residual/--no-residual",
                                  help="Forecast the change from the last frame (starts as persistence; "
                                       "not in the paper)."),
    sampling_iterations: Optional[int] = typer.Option(None, "--sampling-iterations",
                                                      help="Scheduled sampling length (default: half)."),
    val_every: int = typer.Option(1000, "--val-every", min=1),
    val_stride: int = typer.Option(1, "--val-stride", min=1),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every", min=1),
    seed: int = typer.Option(0, "--seed"),
    amp: str = typer.Option("auto", "--amp", help="Mixed precision on GPU: auto, bf16, fp16 or off."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    init_from: Optional[str] = typer.Option(None, "--init-from",
                                            help="Start from these weights (a model name or file, same architecture)."),
    variable: Optional[str] = VARIABLE, units: Optional[str] = UNITS, scale: Optional[float] = SCALE,
    offset: Optional[float] = OFFSET, select: Optional[List[str]] = SELECT, reduce: Optional[str] = REDUCE,
    device: str = DEVICE, overwrite: bool = OVERWRITE,
):
    """Train MotionRNN (or plain PredRNN / ConvLSTM) on your radar archive; resumable."""
    from ..checkpoint import resolve_model_path
    from ..train import TrainConfig, train as run_training

    if not out_dir.parent.exists():
        raise NowcastError(f"folder {out_dir.parent} does not exist", out_dir)
    sequences = [(str(p), _open([p], variable, units, scale, offset, select, reduce)) for p in data]
    val_sequences = [(str(p), _open([p], variable, units, scale, offset, select, reduce)) for p in val or []]
    config = TrainConfig(
        out=out_dir, sequences=sequences, val_sequences=val_sequences, val_fraction=val_fraction,
        val_time=val_time, synthetic_fraction=synthetic_fraction, backbone=backbone, motion=motion,
        num_layers=layers, hidden=hidden, kernel_size=kernel, patch_size=patch, n_in=input_frames, n_out=lead_frames,
        crop=crop, coarsen_factors=_int_list(coarsen, "--coarsen"),
        time_strides=_int_list(time_strides, "--time-strides"), iterations=iterations,
        batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, warmup=warmup, balanced_loss=balanced_loss,
        balance_power=balance_power, loss=loss, grad_clip=grad_clip or None, echo_threshold=echo_dbz,
        min_echo_fraction=min_echo_fraction, model_options={"residual": True} if residual else {},
        sampling_iterations=sampling_iterations, seed=seed, device=device, amp=amp, val_every=val_every,
        val_stride=val_stride, checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite,
        init_from=None if init_from is None else str(resolve_model_path(init_from)),
    )
    summary = run_training(config, progress="rich")
    best = summary.get("best") or {}
    if summary["rank"] == 0:  # under torchrun, one process reports
        out.print(f"{summary['status']}: {summary['iterations']} iterations in {summary['wall_time_s']:.0f} s; "
                  f"checkpoint {summary['paths']['last']}"
                  + (f"; best {best.get('metric')} = {best.get('value'):.4f} at iteration {best.get('iteration')} "
                     f"({summary['paths']['best']})" if best.get("value") is not None else ""))
    if summary["status"] == "interrupted":
        raise typer.Exit(130)
