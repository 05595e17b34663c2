"""The `nowcast` command line: parses options, calls the library, prints with rich.

No logic of its own: every command is a few calls into nowcast's modules. Bad input raises
`NowcastError`, which `main` turns into one red line on stderr and exit code 2 (no traceback
unless --debug).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import NowcastError, NowcastWarning

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Precipitation nowcasting from weather radar: forecast, verify, train, visualise.",
)
out = Console(soft_wrap=True)
if not out.is_terminal:  # pipes and CI logs: don't squeeze score tables into 80 columns
    out.width = 160
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}


# ------------------------------------------------------------------------------- helpers


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, NowcastWarning):
        err.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)
    else:
        err.print(f"warning: {message}", markup=False)


def _version_callback(value: bool):
    if value:
        out.print(f"nowcast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
):
    _state["debug"] = debug


def _parse_select(select: Optional[List[str]]) -> Optional[dict]:
    if not select:
        return None
    parsed = {}
    for item in select:
        name, sep, idx = item.partition("=")
        if not sep or not idx.strip().lstrip("-").isdigit():
            raise NowcastError(f"--select {item!r} must look like DIM=INDEX, e.g. elevation=0")
        parsed[name.strip()] = int(idx)
    return parsed


def _open(paths, variable, units, scale, offset, select, reduce):
    from .radar import open_radar

    return open_radar([str(p) for p in paths], variable=variable, units=units, scale=scale,
                      offset=offset, select=_parse_select(select), reduce=reduce)


def _load_method(method: Optional[str], model: Optional[str], device: str, precision: str = "fp32"):
    """The forecast method object: a trained model, or a built-in baseline by name.

    No method and no model: see `_default_method`.
    """
    from .methods import get_method

    if method is None and model is None:
        method = _default_method()
    if model is not None or method == "model":
        from .checkpoint import DEFAULT_MODEL_NAME
        from .forecast import ModelForecaster

        return ModelForecaster.from_checkpoint(model or DEFAULT_MODEL_NAME, device=device, precision=precision)
    return get_method(method or "extrapolation")


def _default_method() -> str:
    """The shipped model once its card says it beats the baselines, else extrapolation (else persistence)."""
    from .checkpoint import default_model_path, read_checkpoint  # imports torch

    path = default_model_path()
    if path is not None and read_checkpoint(path, tensors=False)[2].get("default_method", True):
        return "model"
    import importlib.util

    if importlib.util.find_spec("pysteps") is None or importlib.util.find_spec("cv2") is None:
        err.print("[yellow]note:[/] pysteps is not installed, so the forecast is persistence; "
                  "pip install 'nowcast[pysteps]' for optical-flow extrapolation")
        return "persistence"
    return "extrapolation"


# Options shared by every command that reads radar files.
VARIABLE = typer.Option(None, "--variable", help="Data variable to read (when a file has several).")
UNITS = typer.Option(None, "--units", help="Declare the data's units: dBZ, mm/h, mm (accumulation) or pixels.")
SCALE = typer.Option(None, "--scale", help="8-bit pixels: dBZ = pixel * SCALE + OFFSET (default 95/255).")
OFFSET = typer.Option(None, "--offset", help="8-bit pixels: the OFFSET above (default -10).")
SELECT = typer.Option(None, "--select", help="Pick one index of an extra dimension, e.g. elevation=0.")
REDUCE = typer.Option(None, "--reduce", help="Combine an extra dimension: max or mean.")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")
PRECISION = typer.Option("fp32", "--precision", help="Model arithmetic: fp32, or bf16 (faster where supported).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace output files that exist already.")


# ------------------------------------------------------------------------------ commands


@app.command(epilog="Examples:\n\n  nowcast predict sample_data/radar.nc -o forecast.nc --plot forecast.png\n\n"
                    "  nowcast predict 'bom/*.nc' --method extrapolation -o fc.nc")
def predict(
    inputs: List[Path] = typer.Argument(..., help="Radar file(s) or a glob of per-frame files."),
    output: Path = typer.Option(Path("forecast.nc"), "-o", "--output", help="Forecast netCDF to write."),
    method: Optional[str] = typer.Option(
        None, "--method", help="persistence, extrapolation or model (default: the shipped model, "
                               "else extrapolation)."),
    model: Optional[str] = typer.Option(None, "--model", help="Trained model: a name in models/ or a file."),
    leads: int = typer.Option(10, "--leads", min=1, max=100, help="Number of future frames."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw input and forecast panels (PNG)."),
    animate: Optional[Path] = typer.Option(None, "--animate", help="Also write an animation (GIF)."),
    truth: Optional[List[Path]] = typer.Option(None, "--truth", help="Observations to draw beside the forecast."),
    variable: Optional[str] = VARIABLE, units: Optional[str] = UNITS, scale: Optional[float] = SCALE,
    offset: Optional[float] = OFFSET, select: Optional[List[str]] = SELECT, reduce: Optional[str] = REDUCE,
    device: str = DEVICE, precision: str = PRECISION, overwrite: bool = OVERWRITE,
):
    """Forecast the next frames of radar reflectivity from the last observed ones."""
    from .atomic import check_output_path
    from .forecast_file import forecast_dataarray, write_forecast
    from .radar import last_regular_frames

    for target in [output] + [p for p in (plot, animate) if p is not None]:
        check_output_path(target, overwrite=overwrite)
    seq = _open(inputs, variable, units, scale, offset, select, reduce)
    if precision not in ("fp32", "bf16"):
        raise NowcastError(f"--precision {precision!r}: choose fp32 or bf16")
    fc_method = _load_method(method, model, device, precision)
    label = inputs[0] if len(inputs) == 1 else f"{inputs[0]} (+{len(inputs) - 1} more)"
    past = last_regular_frames(seq, max(fc_method.input_frames, 2), label)
    with err.status(f"forecasting {leads} frames with {fc_method.name} ..."):
        values = fc_method(past.values, leads)
    forecast = forecast_dataarray(values, past, fc_method.name)
    write_forecast(forecast, output, method=fc_method.name, inputs=seq, overwrite=overwrite)
    step_min = float(forecast["forecast_period"].values[0] / 6e10)
    out.print(f"wrote {output}: {leads} frames of {fc_method.name} forecast, "
              f"{str(forecast.time.values[0])[:16]} to {str(forecast.time.values[-1])[:16]} UTC "
              f"(every {step_min:g} min)")
    if plot is not None or animate is not None:
        from . import plots

        observed = None
        if truth:
            observed = _open(truth, variable, units, scale, offset, select, reduce)
            observed = observed.sel(time=forecast.time.values, method=None) if set(
                forecast.time.values) <= set(observed.time.values) else None
            if observed is None:
                raise NowcastError("--truth does not cover the forecast times", truth[0])
        if plot is not None:
            plots.plot_forecast_panels(seq, forecast, plot, observed=observed, method_name=fc_method.name)
            out.print(f"wrote {plot}")
        if animate is not None:
            plots.animate_forecast(seq, forecast, animate)
            out.print(f"wrote {animate}")


@app.command(epilog="Example:\n\n  nowcast evaluate ../shared/radar/*.nc --baseline persistence "
                    "--baseline extrapolation --json scores.json --plot csi.png")
def evaluate(
    data: List[Path] = typer.Argument(..., help="Radar files; each file (or glob) is one sequence."),
    model: Optional[List[str]] = typer.Option(None, "--model", help="Model(s) to score; 'default' = shipped."),
    baseline: Optional[List[str]] = typer.Option(None, "--baseline", help="persistence and/or extrapolation."),
    thresholds: str = typer.Option("30,40,50", "--thresholds", help="dBZ thresholds, comma separated."),
    stride: int = typer.Option(1, "--stride", min=1, help="Frames between consecutive windows."),
    input_frames: int = typer.Option(5, "--input-frames", min=2),
    lead_frames: int = typer.Option(10, "--lead-frames", min=1),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the scores as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw CSI/POD/FAR against lead time (PNG)."),
    variable: Optional[str] = VARIABLE, units: Optional[str] = UNITS, scale: Optional[float] = SCALE,
    offset: Optional[float] = OFFSET, select: Optional[List[str]] = SELECT, reduce: Optional[str] = REDUCE,
    device: str = DEVICE, overwrite: bool = OVERWRITE,
):
    """Score models and baselines on exactly the same forecast windows."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .atomic import atomic_write_text, check_output_path
    from .evaluate import evaluate as run_evaluation, format_table, to_json

    for target in [p for p in (json_out, plot) if p is not None]:
        check_output_path(target, overwrite=overwrite)
    try:
        thr = sorted({float(t) for t in thresholds.split(",") if t.strip()})
    except ValueError:
        raise NowcastError(f"--thresholds {thresholds!r} must be numbers separated by commas") from None
    methods = [_load_method("model", None if name == "default" else name, device) for name in model or []]
    if methods:
        from .forecast import name_clashing_models

        name_clashing_models(methods, model)
    for name in baseline or []:
        methods.append(_load_method(name, None, device))
    if not methods:
        methods = [_load_method(None, None, device)]
        if methods[0].name != "persistence":
            methods.append(_load_method("persistence", None, device))
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise NowcastError(f"the same method is named twice: {', '.join(names)}")
    sequences = []
    for path in data:
        sequences.append((str(path), _open([path], variable, units, scale, offset, select, reduce)))
    with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("windows", total=None)

        def progress(done, total):
            bar.update(task, completed=done, total=total)

        result = run_evaluation(sequences, methods, thresholds=thr, n_in=input_frames, n_out=lead_frames,
                                stride=stride, progress=progress)
    out.print(format_table(result))
    if json_out is not None:
        atomic_write_text(json_out, to_json(result), overwrite=overwrite)
        out.print(f"wrote {json_out}")
    if plot is not None:
        from .plots import plot_score_curves

        plot_score_curves(result, plot)
        out.print(f"wrote {plot}")


@app.command(epilog="Example:\n\n  nowcast sample-data -o radar.nc --frames 24 --size 128 --seed 2026")
def sample_data(
    output: Path = typer.Option(..., "-o", "--output", help="netCDF file to write."),
    frames: int = typer.Option(24, "--frames", min=2, help="Number of frames."),
    size: int = typer.Option(128, "--size", min=16, help="Grid size in pixels (square)."),
    seed: int = typer.Option(2026, "--seed", help="Random seed (same seed, same data)."),
    motion: str = typer.Option("mixed", "--motion", help="mixed, uniform or rotation."),
    overwrite: bool = OVERWRITE,
):
    """Make a synthetic radar sequence with spacetime-varying motion (for demos and tests)."""
    from .atomic import check_output_path
    from .synthetic import generate, write_netcdf

    check_output_path(output, overwrite=overwrite)
    if motion not in ("mixed", "uniform", "rotation"):
        raise NowcastError(f"--motion {motion!r}: choose mixed, uniform or rotation")
    with err.status("generating synthetic radar ..."):
        da = generate(n_frames=frames, height=size, width=size, seed=seed, motion=motion)
        write_netcdf(da, output, overwrite=overwrite)
    out.print(f"wrote {output}: {frames} frames of {size}x{size} synthetic reflectivity (seed {seed})")


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
    from .checkpoint import resolve_model_path
    from .train import TrainConfig, train as run_training

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


@app.command(name="visualize-trend",
             epilog="Examples:\n\n  nowcast visualize-trend sample_data/radar.nc -o trend.png\n\n"
                    "  nowcast visualize-trend radar.nc -o trend.png --model runs/my-model/best.safetensors "
                    "--layer 2 --transient --vectors trend.nc")
def visualize_trend(
    inputs: List[Path] = typer.Argument(..., help="Radar file(s) or a glob of per-frame files."),
    output: Path = typer.Option(..., "-o", "--output", help="Picture to write (PNG, SVG, PDF ...)."),
    model: Optional[str] = typer.Option(None, "--model", help="MotionRNN model: a name in models/ or a file "
                                                              "(default: the shipped model)."),
    layer: int = typer.Option(1, "--layer", help="Which MotionGRU: 1 = between blocks 1 and 2."),
    step: str = typer.Option("last", "--step", help="Recurrent step: 'last' = the one reading the last "
                                                    "observed frame, or N (1-based; beyond the inputs: "
                                                    "the model's own forecasts)."),
    field: str = typer.Option("trend", "--field", help="trend (momentum D) or filter (F = F' + D)."),
    transient: bool = typer.Option(False, "--transient", help="Also draw the transient variation F'."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="Also write the vectors (dx, dy) as netCDF."),
    every: Optional[int] = typer.Option(None, "--every", min=1, help="One arrow per N x N model cells "
                                                                    "(default: about 20 across)."),
    variable: Optional[str] = VARIABLE, units: Optional[str] = UNITS, scale: Optional[float] = SCALE,
    offset: Optional[float] = OFFSET, select: Optional[List[str]] = SELECT, reduce: Optional[str] = REDUCE,
    device: str = DEVICE, overwrite: bool = OVERWRITE,
):
    """Draw a MotionRNN model's learned motion trend as arrows over the last radar frame."""
    from . import trend as trend_lib
    from .atomic import check_output_path
    from .radar import last_regular_frames

    for target in [output] + ([vectors] if vectors is not None else []):
        check_output_path(target, overwrite=overwrite)
    if field not in ("trend", "filter"):
        raise NowcastError(f"--field {field!r}: choose trend or filter")
    seq = _open(inputs, variable, units, scale, offset, select, reduce)
    fc_method = _load_method("model", model, device)
    trend_lib.check_trend_model(fc_method, field)
    label = inputs[0] if len(inputs) == 1 else f"{inputs[0]} (+{len(inputs) - 1} more)"
    past = last_regular_frames(seq, fc_method.input_frames, label)
    with err.status(f"running {fc_method.name} ..."):
        vec = trend_lib.trend_vectors(fc_method, past, layer=layer, step=step, field=field, transient=transient)
    trend_lib.plot_trend_vectors(vec, past.isel(time=-1), output, every=every, overwrite=overwrite)
    s = trend_lib.summarise(vec)
    out.print(f"wrote {output}: {field} of MotionGRU {vec.attrs['layer']} at step {vec.attrs['step']} "
              f"({vec.attrs['step_reads']}) of {fc_method.name}; mean displacement dx {s['mean_dx']:+.2f}, "
              f"dy {s['mean_dy']:+.2f} grid cells per step")
    if vectors is not None:
        trend_lib.write_vectors(vec, vectors, overwrite=overwrite)
        out.print(f"wrote {vectors}")


# ---------------------------------------------------------------------------------- entry


def main(argv=None) -> int:
    """Console entry point: user errors become one red line and exit code 2."""
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", NowcastWarning)
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code) comes back as a return value here
            return code
    except NowcastError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        return 130
    except OSError as exc:  # e.g. permission denied or disk full while writing an output
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"[red]error:[/] {where}{exc.strerror or exc}", markup=True, highlight=False)
        return 2
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err.print(f"[red]internal error:[/] {type(exc).__name__}: {first} (rerun with --debug for details)",
                  markup=True, highlight=False)
        return 1
    return 0


def run() -> None:
    sys.exit(main())
