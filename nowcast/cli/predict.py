"""`nowcast predict`: forecast the next frames from the last observed ones."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import NowcastError
from .common import (DEVICE, OFFSET, OVERWRITE, PRECISION, REDUCE, SCALE, SELECT, UNITS, VARIABLE, app, err,
                     _load_method, _open, out)


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
    from ..atomic import check_output_path
    from ..forecast_file import forecast_dataarray, write_forecast
    from ..radar import last_regular_frames

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
        from .. import plots

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
