"""`nowcast visualize-trend`: a model's learned motion as arrows."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import NowcastError
from .common import (DEVICE, NETCDF_SUFFIXES, OVERWRITE, Reading, app, check_outputs, check_picture_path,
                     check_suffix, err, input_label, reads_radar, say)


@app.command(name="visualize-trend",
             epilog="Examples:\n\n  nowcast visualize-trend sample_data/radar.nc -o trend.png\n\n"
                    "  nowcast visualize-trend radar.nc -o trend.png --model runs/my-model/best.safetensors "
                    "--layer 2 --transient --vectors trend.nc")
@reads_radar()
def visualize_trend(
    inputs: List[Path] = typer.Argument(..., metavar="INPUT", hidden=True, help="Radar file(s) or a glob of per-frame files."),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE.png", help="Picture to write (PNG, SVG, PDF ...)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME_OR_FILE", help="MotionRNN model: a name in models/ or a file "
                                                              "(default: the shipped model)."),
    layer: int = typer.Option(1, "--layer", metavar="N", help="Which MotionGRU: 1 = between blocks 1 and 2."),
    step: str = typer.Option("last", "--step", metavar="last|N", help="Recurrent step: 'last' = the one reading the last "
                                                    "observed frame, or N (1-based; beyond the inputs: "
                                                    "the model's own forecasts)."),
    field: str = typer.Option("trend", "--field", metavar="trend|filter", help="trend (momentum D) or filter (F = F' + D)."),
    transient: bool = typer.Option(False, "--transient", help="Also draw the transient variation F'."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", metavar="FILE.nc", help="Also write the vectors (dx, dy) as netCDF."),
    every: Optional[int] = typer.Option(None, "--every", min=1, metavar="N", help="One arrow per N x N model cells "
                                                                    "(default: about 20 across)."),
    device: str = DEVICE, overwrite: bool = OVERWRITE, reading: Reading = Reading(),
):
    """Draw a MotionRNN model's learned motion trend as arrows over the last radar frame.

    INPUT: radar file(s), or a quoted glob of per-frame files.
    """
    from .. import trend as trend_lib
    from ..methods import resolve
    from ..radar import last_regular_frames

    check_picture_path(output, "-o/--output")
    check_suffix(vectors, "--vectors", NETCDF_SUFFIXES, "netCDF")
    check_outputs([output, vectors], overwrite)
    if field not in ("trend", "filter"):
        raise NowcastError(f"--field {field!r}: choose trend or filter")
    seq = reading.open(inputs)
    fc_method = resolve("model", model, device=device)
    trend_lib.check_trend_model(fc_method, field)
    label = input_label(inputs)
    past = last_regular_frames(seq, fc_method.input_frames, label)
    with err.status(f"running {fc_method.name} ..."):
        vec = trend_lib.trend_vectors(fc_method, past, layer=layer, step=step, field=field, transient=transient)
    trend_lib.plot_trend_vectors(vec, past.isel(time=-1), output, every=every, overwrite=overwrite)
    s = trend_lib.summarise(vec)
    what = (f"optical flow and the learned correction ({field} of MotionGRU {vec.attrs['layer']})"
            if vec.attrs.get("frame") == "lagrangian" else f"{field} of MotionGRU {vec.attrs['layer']}")
    moved = "flow + correction" if vec.attrs.get("frame") == "lagrangian" else "displacement"
    say(f"wrote {output}: {what} at step {vec.attrs['step']} ({vec.attrs['step_reads']}) of {fc_method.name}; "
        f"mean {moved} dx {s['mean_dx']:+.2f}, dy {s['mean_dy']:+.2f} grid cells per step")
    if vectors is not None:
        trend_lib.write_vectors(vec, vectors, overwrite=overwrite)
        say(f"wrote {vectors}")
