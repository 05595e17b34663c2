"""`nowcast evaluate`: score models and baselines on the same windows."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import NowcastError
from .common import (DEVICE, OVERWRITE, PRECISION, PROB_MATCH, Reading, app, check_outputs, check_picture_path,
                     check_suffix, err, out, reads_radar, say)

DEFAULT_MODEL = "default"


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
                                help="Score on N processes of this machine (the scores are identical)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                            help="Score on a dask.distributed cluster (tcp://host:port); needs "
                                                 "nowcast[cluster], and workers that can read the model files."),
    prob_match: bool = PROB_MATCH,
    device: str = DEVICE, precision: str = PRECISION, overwrite: bool = OVERWRITE, reading: Reading = Reading(),
):
    """Score models and baselines on exactly the same forecast windows.

    DATA: radar files; each file (or quoted glob of per-frame files) is one sequence.

    Without --model or --baseline: the default method and persistence.

    --workers N or --scheduler ADDRESS split the windows between processes; each builds its own methods
    and the merged scores equal those of one process exactly.
    """
    from ..atomic import atomic_write_text
    from ..evaluate import format_table, to_json

    check_suffix(json_out, "--json", (".json",), "JSON")
    check_picture_path(plot, "--plot")
    check_outputs([json_out, plot], overwrite)
    if scheduler is not None and workers > 1:
        raise NowcastError("give --workers or --scheduler, not both: with --scheduler the cluster's workers score")
    thr = _thresholds(thresholds)
    specs = _method_specs(model, baseline)
    _check_specs(specs, precision, prob_match)
    client = _connect(scheduler)  # an unreachable scheduler is refused before any file is read
    try:
        sequences = [(str(path), reading.open([path])) for path in data]
        methods = _load_methods(specs, model, device, precision, prob_match)
        if workers > 1 or client is not None:
            methods = _portable_specs(specs, methods, device, precision, prob_match)
        result = _run(sequences, methods, thr, input_frames, lead_frames, stride, workers, client)
    finally:
        if client is not None:
            client.close()
    out.print(format_table(result))
    if json_out is not None:
        atomic_write_text(json_out, to_json(result), overwrite=overwrite)
        say(f"wrote {json_out}")
    if plot is not None:
        from ..plots import plot_score_curves

        plot_score_curves(result, plot)
        say(f"wrote {plot}")


def _run(sequences, methods, thresholds, n_in, n_out, stride, workers, client):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..evaluate import evaluate as run_evaluation

    with Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("windows"),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("windows", total=None)

        def progress(done, total):
            bar.update(task, completed=done, total=total)

        return run_evaluation(sequences, methods, thresholds=thresholds, n_in=n_in, n_out=n_out, stride=stride,
                              progress=progress, workers=workers, scheduler=client)


def _connect(address: str | None):
    if address is None:
        return None
    from ..evaluate import connect_scheduler

    return connect_scheduler(address)


def _portable_specs(specs, methods, device: str, precision: str, prob_match: bool) -> list:
    """The loaded methods as recipes each worker builds for itself, under the names they have here
    (a checkpoint file by its absolute path: workers may run elsewhere)."""
    from ..evaluate import MethodSpec

    recipes = []
    for (spec, model), method in zip(specs, methods):
        if model is not None and Path(model).is_file():
            model = str(Path(model).resolve())
        recipes.append(MethodSpec(spec, model, device=device, precision=precision if spec == "model" else "fp32",
                                  prob_match=prob_match, name=method.name))
    return recipes


def _thresholds(text: str) -> list[float]:
    try:
        return sorted({float(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise NowcastError(f"--thresholds {text!r} must be numbers separated by commas") from None


def _method_specs(models, baselines) -> list[tuple]:
    """(method, model) pairs for nowcast.methods: the models, then the baselines; none given: the default
    method, then persistence beside it."""
    from ..methods import default_spec

    specs = [("model", None if name == DEFAULT_MODEL else name) for name in models or []]
    specs += [(name, None) for name in baselines or []]
    if not specs:
        specs = [(default_spec(), None)]
        if specs[0][0] != "persistence":
            specs.append(("persistence", None))
    return specs


def _check_specs(specs, precision: str, prob_match: bool) -> None:
    """Every method choice, refused before any file is read or model loaded."""
    from ..methods import check_spec

    names = [model or spec for spec, model in specs]
    if len(set(names)) != len(names):
        raise NowcastError(f"the same method is named twice: {', '.join(names)}")
    models_asked = any(spec == "model" for spec, _ in specs)
    for spec, model in specs:
        # --precision is for the models; the baselines beside them run as they always do
        check_spec(spec, model, precision if spec == "model" or not models_asked else "fp32", prob_match)


def _load_methods(specs, model_names, device: str, precision: str, prob_match: bool) -> list:
    from ..methods import resolve

    methods = [resolve(spec, model, device=device, precision=precision if spec == "model" else "fp32",
                       prob_match=prob_match) for spec, model in specs]
    loaded_models = [m for (spec, _), m in zip(specs, methods) if spec == "model"]
    if len(loaded_models) > 1:
        from ..forecast import name_clashing_models

        name_clashing_models(loaded_models, model_names)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise NowcastError(f"the same method is named twice: {', '.join(names)}")
    return methods
