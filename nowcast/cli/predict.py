"""`nowcast predict`: forecast the next frames from the last observed ones.

Everything that can be refused is refused before the forecast is computed: output names and formats,
the method/model/precision choice, the output units, and whether --truth covers the forecast times.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from ..errors import NowcastError
from .common import (DEVICE, LEAD_SMOOTHING, NETCDF_SUFFIXES, OVERWRITE, PRECISION, PROB_MATCH, Reading, app,
                     check_outputs, check_picture_path, check_suffix, err, input_label, note, reads_radar, say)

ANIMATION_SUFFIXES = (".gif",)



METHOD_HELP = ("model, persistence, extrapolation, extrapolation-smoothed, anvil (default: model, the shipped "
               "Lagrangian MotionRNN, which its model card recommends; extrapolation for a model that is not).")
METHOD = typer.Option(None, "--method", metavar="NAME", help=METHOD_HELP)
TILE_SIZE = typer.Option(None, "--tile-size", min=0, metavar="PIXELS",
                         help="Run the model's network in tiles of this many pixels (each with a border of "
                              "neighbours, blended), which bounds its memory on large grids; 0 = the whole "
                              "grid at once. Default: tiles of 512 on grids over 1536 x 1536 pixels.")
OUTPUT_UNITS = typer.Option(None, "--output-units", metavar="dBZ|mm/h",
                            help="Units of the forecast file: dBZ, or mm/h by Marshall-Palmer (default: the "
                                 "input's kind, so rain-rate input gives a rain-rate forecast).")

@app.command(epilog="Examples:\n\n  nowcast predict sample_data/radar.nc -o forecast.nc --plot forecast.png\n\n"
                    "  nowcast predict 'bom/*.nc' --method extrapolation -o fc.nc --output-units mm/h\n\n"
                    "  nowcast predict radar.nc --plot-motion motion.png --save-motion motion.nc")
@reads_radar()
def predict(
    inputs: List[Path] = typer.Argument(..., metavar="INPUT", hidden=True, help="Radar file(s) or a glob of per-frame files."),
    output: Path = typer.Option(Path("forecast.nc"), "-o", "--output", metavar="FILE.nc",
                                help="Forecast netCDF to write."),
    method: Optional[str] = METHOD,
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME_OR_FILE",
                                        help="Trained model: a name in models/ or a file (implies --method model)."),
    leads: int = typer.Option(10, "--leads", min=1, max=100, metavar="N", help="Number of future frames."),
    output_units: Optional[str] = OUTPUT_UNITS,
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png",
                                        help="Also draw input and forecast panels (PNG, PDF, SVG)."),
    animate: Optional[Path] = typer.Option(None, "--animate", metavar="FILE.gif",
                                           help="Also write an animation (GIF)."),
    truth: Optional[List[Path]] = typer.Option(None, "--truth", metavar="FILE",
                                               help="Observations of the forecast times, drawn beside the forecast "
                                                    "in --plot/--animate."),
    plot_motion: Optional[Path] = typer.Option(None, "--plot-motion", metavar="FILE.png",
                                               help="Also draw the optical-flow motion field over the last frame."),
    save_motion: Optional[Path] = typer.Option(None, "--save-motion", metavar="FILE.nc",
                                               help="Also write the optical-flow motion field as netCDF (grid cells "
                                                    "per time step)."),
    prob_match: bool = PROB_MATCH, lead_smoothing: Optional[float] = LEAD_SMOOTHING,
    device: str = DEVICE, precision: str = PRECISION, tile_size: Optional[int] = TILE_SIZE,
    overwrite: bool = OVERWRITE, reading: Reading = Reading(),
):
    """Forecast the next frames of radar reflectivity from the last observed ones.

    INPUT: radar file(s), or a quoted glob of per-frame files ('bom/*.nc'), in dBZ, rain rate,
    accumulation or 8-bit pixels.
    """
    from ..forecast_file import output_units as parse_output_units
    from ..methods import resolve
    from ..pipeline import run

    _check_options(output, plot, animate, plot_motion, save_motion, truth, overwrite)
    if output_units is not None:
        parse_output_units(output_units)
    # the method is checked and built (a model loaded, in about a second) before the radar is read
    fc_method = resolve(method, model, device=device, precision=precision, tile_size=tile_size,
                        lead_smoothing=lead_smoothing, prob_match=prob_match)
    seq = reading.open(inputs)
    label = input_label(inputs)
    observed = _truth_at(truth, _forecast_times(seq, leads, label), reading) if truth else None
    with err.status(f"forecasting {leads} frames with {fc_method.name} ..."):
        result = run(seq, fc_method, leads, output_units, label, notes=note)  # the status line stays below the notes (one console)
    _write(result, output, overwrite)
    _draw(result, observed, plot, animate, overwrite)
    if plot_motion is not None or save_motion is not None:
        _motion_outputs(result, plot_motion, save_motion, overwrite)


def _check_options(output, plot, animate, plot_motion, save_motion, truth, overwrite) -> None:
    """Output names, formats and option combinations: all refused before any reading or computing."""
    check_suffix(output, "-o/--output", NETCDF_SUFFIXES, "netCDF")
    check_picture_path(plot, "--plot")
    check_suffix(animate, "--animate", ANIMATION_SUFFIXES, "a GIF animation")
    check_picture_path(plot_motion, "--plot-motion")
    check_suffix(save_motion, "--save-motion", NETCDF_SUFFIXES, "netCDF")
    if truth and plot is None and animate is None:
        raise NowcastError("--truth is drawn beside the forecast: give --plot or --animate with it")
    check_outputs([output, plot, animate, plot_motion, save_motion], overwrite)


def _forecast_times(seq, leads: int, label) -> np.ndarray:
    """Valid times of the forecast: the last observed time plus 1..leads steps."""
    from ..forecast_file import forecast_times

    if seq.sizes["time"] < 2:
        raise NowcastError(f"has {seq.sizes['time']} frame(s); the forecast needs at least 2 input frames", label)
    return forecast_times(seq, leads)


def _truth_at(truth, times: np.ndarray, reading: Reading):
    """The observations at exactly the forecast times, or a NowcastError naming the first time missing."""
    observed = reading.open(truth)
    have = set(observed["time"].values.astype("datetime64[ns]").tolist())
    missing = [t for t in times.astype("datetime64[ns]") if t.tolist() not in have]
    if missing:
        first = str(np.datetime64(missing[0], "m")).replace("T", " ")
        raise NowcastError(f"--truth does not cover the forecast times: {len(missing)} of {len(times)} missing, "
                           f"the first at {first} UTC", input_label(truth))
    return observed.sel(time=times)


def _write(result, output: Path, overwrite: bool) -> None:
    from ..netcdf import write_dataset

    write_dataset(result.dataset, output, overwrite=overwrite)
    times = result.frames.time.values
    say(f"wrote {output}: {times.size} frames of {result.method.name} forecast in {result.units}, "
        f"{str(times[0])[:16]} to {str(times[-1])[:16]} UTC (every {result.step_minutes:g} min)")


def _draw(result, observed, plot, animate, overwrite) -> None:
    """The panels and the animation, in the forecast file's units (dBZ, or mm/h on a rain-rate scale)."""
    if plot is None and animate is None:
        return
    from .. import plots

    name, units = result.method.name, result.units
    if plot is not None:
        plots.plot_forecast_panels(result.inputs, result.frames, plot, observed=observed, method_name=name,
                                   overwrite=overwrite, units=units)
        say(f"wrote {plot}")
    if animate is not None:
        plots.animate_forecast(result.inputs, result.frames, animate, method_name=name, overwrite=overwrite,
                               units=units)
        say(f"wrote {animate}")


def _motion_outputs(result, plot_motion, save_motion, overwrite) -> None:
    """The optical-flow motion of the input frames (the flow the method advected with, or estimated now for a
    method that does not advect): a quiver picture and/or a netCDF file."""
    from ..forecast_file import write_motion

    velocity = result.input.motion
    if velocity is None:
        with err.status("estimating the motion field ..."):
            velocity = result.input.with_motion().motion
    last = result.past.isel(time=-1)
    step_min = result.step_minutes if np.isfinite(result.step_minutes) else None
    if plot_motion is not None:
        from ..plots import plot_motion_field

        when = str(np.datetime64(last["time"].values, "m")).replace("T", " ")
        plot_motion_field(last, velocity, plot_motion, title=f"optical-flow motion at {when} UTC",
                          overwrite=overwrite, time_step_minutes=step_min)
        say(f"wrote {plot_motion}")
    if save_motion is not None:
        write_motion(velocity, last, save_motion, step_minutes=step_min, overwrite=overwrite)
        say(f"wrote {save_motion}")
