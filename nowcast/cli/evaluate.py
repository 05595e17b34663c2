"""`nowcast evaluate`: score models and baselines on the same windows."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import NowcastError
from .common import (DEVICE, OFFSET, OVERWRITE, PRECISION, REDUCE, SCALE, SELECT, UNITS, VARIABLE, app, err,
                     _load_method, _open, out)


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

    from ..atomic import atomic_write_text, check_output_path
    from ..evaluate import evaluate as run_evaluation, format_table, to_json

    for target in [p for p in (json_out, plot) if p is not None]:
        check_output_path(target, overwrite=overwrite)
    try:
        thr = sorted({float(t) for t in thresholds.split(",") if t.strip()})
    except ValueError:
        raise NowcastError(f"--thresholds {thresholds!r} must be numbers separated by commas") from None
    methods = [_load_method("model", None if name == "default" else name, device) for name in model or []]
    if methods:
        from ..forecast import name_clashing_models

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
        from ..plots import plot_score_curves

        plot_score_curves(result, plot)
        out.print(f"wrote {plot}")
