"""`nowcast evaluate`: score models and baselines on the same windows."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import NowcastError
from .common import (DEVICE, LEAD_SMOOTHING, OVERWRITE, PRECISION, PROB_MATCH, Reading, app, check_outputs,
                     check_picture_path, check_suffix, err, out, reads_radar, say)


@app.command(epilog="Examples:\n\n  nowcast evaluate archive/*.nc --baseline persistence "
                    "--baseline extrapolation --json scores.json --plot csi.png\n\n"
                    "  nowcast evaluate archive/*.nc --model default --model runs/my-model/best.safetensors\n\n"
                    "  nowcast evaluate archive/*.nc --baseline extrapolation --workers 4")
@reads_radar(lazy=True)
def evaluate(
    data: List[Path] = typer.Argument(..., metavar="DATA", hidden=True, help="Radar files; each file (or glob) is one sequence."),
    model: Optional[List[str]] = typer.Option(None, "--model", metavar="NAME_OR_FILE",
                                              help="Model(s) to score; 'default' = the shipped model."),
    baseline: Optional[List[str]] = typer.Option(None, "--baseline", metavar="NAME",
                                                 help="Baseline(s) to score: persistence, extrapolation, ..."),
    thresholds: str = typer.Option("30,40,50", "--thresholds", metavar="DBZ,...", help="dBZ thresholds, comma separated."),
    stride: int = typer.Option(1, "--stride", min=1, metavar="N", help="Frames between consecutive windows."),
    input_frames: int = typer.Option(5, "--input-frames", min=2, metavar="N", help="Input frames per window."),
    lead_frames: int = typer.Option(10, "--lead-frames", min=1, metavar="N", help="Forecast frames per window."),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE.json", help="Write the scores as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png",
                                        help="Draw CSI/POD/FAR against lead time (PNG, PDF, SVG)."),
    workers: int = typer.Option(1, "--workers", min=1, metavar="N",
                                help="Score on N processes of this machine (the same scores; a model's to rounding, each "
                                     "worker running torch on one thread)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                            help="Score on a dask.distributed cluster (tcp://host:port); needs "
                                                 "nowcast[cluster], and workers that can read the model files."),
    domain: str = typer.Option("observed", "--domain", metavar="observed|common",
                               help="Pixels scored: 'observed' = every pixel the radar observed, a method's missing "
                                    "forecast there counting as no echo (adding a method never changes another's "
                                    "scores); 'common' = only the pixels every method forecast."),
    prob_match: bool = PROB_MATCH, lead_smoothing: Optional[float] = LEAD_SMOOTHING,
    device: str = DEVICE, precision: str = PRECISION, overwrite: bool = OVERWRITE, reading: Reading = Reading(),
):
    """Score models and baselines on exactly the same forecast windows.

    DATA: radar files; each file (or quoted glob of per-frame files) is one sequence.

    Without --model or --baseline: the default method and persistence.

    Every method is scored on every pixel the radar observed; where a method has no forecast (advection
    has none on the inflow border) it counts as no echo, and the coverage column and table say how much of
    the observed area each method forecast, per lead. --domain common scores only the pixels all methods
    forecast.

    --workers N or --scheduler ADDRESS split the windows between processes; each builds its own methods
    and the merged scores equal those of one process exactly for the baselines, and to rounding for a model
    (each worker runs torch on one thread, and torch's sums depend on the thread count).
    """
    from ..atomic import atomic_write_text
    from ..evaluate import DOMAINS, MethodSpec, to_json
    from ..methods import check_specs, comparison_specs, resolve_all
    from ..options import ModelOptions
    from .tables import coverage_table, invented_table, score_table

    check_suffix(json_out, "--json", (".json",), "JSON")
    check_picture_path(plot, "--plot")
    check_outputs([json_out, plot], overwrite)
    if scheduler is not None and workers > 1:
        raise NowcastError("give --workers or --scheduler, not both: with --scheduler the cluster's workers score")
    thr = _thresholds(thresholds)
    if domain not in DOMAINS:
        raise NowcastError(f"--domain {domain!r}: choose observed or common")
    specs = comparison_specs(model, baseline)
    options = ModelOptions(device=device, precision=precision, prob_match=prob_match, lead_smoothing=lead_smoothing)
    check_specs(specs, options)
    client = _connect(scheduler)  # an unreachable scheduler is refused before any file is read
    try:
        sequences = [(str(path), reading.open([path])) for path in data]
        methods = resolve_all(specs, options)
        if workers > 1 or client is not None:  # recipes: every worker builds its own
            methods = MethodSpec.recipes(specs, methods, options)
        result = _run(sequences, methods, dict(thresholds=thr, n_in=input_frames, n_out=lead_frames, stride=stride,
                                               workers=workers, scheduler=client, domain=domain))
    finally:
        if client is not None:
            client.close()
    out.print(score_table(result))
    out.print(coverage_table(result))
    out.print(invented_table(result))
    if json_out is not None:
        atomic_write_text(json_out, to_json(result), overwrite=overwrite)
        say(f"wrote {json_out}")
    if plot is not None:
        from ..plots import plot_score_curves

        plot_score_curves(result, plot)
        say(f"wrote {plot}")


def _run(sequences, methods, settings: dict):
    """``nowcast.evaluate`` with ``settings`` (its keyword arguments), under a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..evaluate import evaluate as run_evaluation

    with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("windows", total=None)

        def progress(done, total):
            bar.update(task, completed=done, total=total)

        return run_evaluation(sequences, methods, progress=progress, **settings)


def _connect(address: str | None):
    if address is None:
        return None
    from ..evaluate import connect_scheduler

    return connect_scheduler(address)


def _thresholds(text: str) -> list[float]:
    try:
        return sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise NowcastError(f"--thresholds {text!r} must be numbers separated by commas") from None
