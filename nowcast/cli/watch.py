"""`nowcast watch`: follow a folder of radar frames and keep a fresh forecast on disk (`nowcast.watch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (DEVICE, LEAD_SMOOTHING, PRECISION, PROB_MATCH, Reading, app, note, reads_radar, say)
from .predict import METHOD, OUTPUT_UNITS, TILE_SIZE

SIGINT_EXIT_CODE = 130  # the shell's code for Ctrl-C; SIGTERM (a service being stopped) is a normal end: 0


@app.command(epilog="Examples:\n\n  nowcast watch /data/radar -o /data/nowcast --keep 288\n\n"
                    "  nowcast watch incoming -o forecasts --pattern 'comp_*.nc' --method extrapolation --plot\n\n"
                    "  nowcast watch incoming -o forecasts --once   (for cron: what is there, then exit)")
@reads_radar()
def watch(
    in_dir: Path = typer.Argument(..., metavar="IN_DIR", help="Folder the radar frames arrive in."),
    out_dir: Path = typer.Option(..., "-o", "--output-dir", metavar="OUT_DIR",
                                 help="Folder for <prefix>_<YYYYmmddHHMM>.nc forecasts and latest.nc."),
    pattern: str = typer.Option("*.nc", "--pattern", metavar="GLOB", help="Which files in IN_DIR are frames."),
    prefix: str = typer.Option("forecast", "--prefix", metavar="NAME", help="Start of forecast file names."),
    method: Optional[str] = METHOD,
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME_OR_FILE",
                                        help="Trained model: a name in models/ or a file (implies --method model)."),
    leads: int = typer.Option(10, "--leads", min=1, max=100, metavar="N", help="Number of future frames."),
    output_units: Optional[str] = OUTPUT_UNITS,
    plot: bool = typer.Option(False, "--plot", help="Also draw a PNG of panels beside each forecast "
                                                    "(and latest.png)."),
    keep: Optional[int] = typer.Option(None, "--keep", min=1, metavar="N",
                                       help="Keep only the N newest forecasts (default: all)."),
    once: bool = typer.Option(False, "--once", help="Forecast from what is in IN_DIR now, then exit (for cron)."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, metavar="SECONDS",
                                   help="How often to look at IN_DIR when inotify is not available, and how "
                                        "often to check files written in place."),
    prob_match: bool = PROB_MATCH, lead_smoothing: Optional[float] = LEAD_SMOOTHING,
    device: str = DEVICE, precision: str = PRECISION, tile_size: Optional[int] = TILE_SIZE,
    reading: Reading = Reading(),
):
    """Follow IN_DIR and forecast again each time a new radar frame arrives there.

    A file counts once it is complete (renamed in, or its size stable). Each forecast is written to
    OUT_DIR/<prefix>_<YYYYmmddHHMM>.nc and then replaces OUT_DIR/latest.nc, both atomically. Bad files and
    gaps are warnings; SIGTERM ends it (exit 0), Ctrl-C too (exit 130).
    """
    from ..forecast_file import output_units as parse_output_units
    from ..methods import check_spec, resolve
    from ..options import ModelOptions
    from ..watch import Watcher

    options = ModelOptions(device=device, precision=precision, tile_size=tile_size, lead_smoothing=lead_smoothing,
                           prob_match=prob_match)
    check_spec(method, model, options)
    if output_units is not None:
        parse_output_units(output_units)
    fc_method = resolve(method, model, options)
    watcher = Watcher(in_dir, out_dir, fc_method, pattern=pattern, prefix=prefix, leads=leads,
                      output_units=output_units, plot=plot, keep=keep, interval=interval,
                      read=lambda path: reading.open([path]), log=say)
    if not once:
        note(f"watching {in_dir} ({watcher.following}) with {fc_method.name}; forecasts in {out_dir}")
    ended = watcher.run(once=once)
    if ended == "SIGINT":
        raise typer.Exit(SIGINT_EXIT_CODE)
