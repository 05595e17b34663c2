"""`nowcast sample-data`: a synthetic radar sequence."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import NowcastError
from .common import NETCDF_SUFFIXES, OVERWRITE, app, check_suffix, err, say


@app.command(epilog="Example:\n\n  nowcast sample-data -o radar.nc --frames 24 --size 128 --seed 2026")
def sample_data(
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE.nc", help="netCDF file to write."),
    frames: int = typer.Option(24, "--frames", min=2, metavar="N", help="Number of frames."),
    size: int = typer.Option(128, "--size", min=16, metavar="PIXELS", help="Grid size in pixels (square)."),
    seed: int = typer.Option(2026, "--seed", metavar="N", help="Random seed (same seed, same data)."),
    motion: str = typer.Option("mixed", "--motion", metavar="KIND", help="mixed, uniform or rotation."),
    overwrite: bool = OVERWRITE,
):
    """Make a synthetic radar sequence with spacetime-varying motion (for demos and tests)."""
    from ..atomic import check_output_path
    from ..synthetic import generate, write_netcdf

    check_suffix(output, "-o/--output", NETCDF_SUFFIXES, "netCDF")
    check_output_path(output, overwrite=overwrite)
    if motion not in ("mixed", "uniform", "rotation"):
        raise NowcastError(f"--motion {motion!r}: choose mixed, uniform or rotation")
    with err.status("generating synthetic radar ..."):
        da = generate(n_frames=frames, height=size, width=size, seed=seed, motion=motion)
        write_netcdf(da, output, overwrite=overwrite)
    say(f"wrote {output}: {frames} frames of {size}x{size} synthetic reflectivity (seed {seed})")
