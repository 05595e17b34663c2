"""The forecast pipeline of ``nowcast predict`` as one library call: read, take the last regular frames, run the
method, post-process, build the CF dataset.

    ds = nowcast.predict("radar.nc", method="extrapolation", leads=10)   # the Dataset `nowcast predict` writes

``predict`` returns the CF-1.8 Dataset that ``netcdf.write_dataset`` writes (its encodings set: int16 packing of
dBZ in 0.01 steps, compression), so ``write_dataset(predict(...), path)`` makes the file the command makes.
``run`` is the same pipeline on a sequence already read and a method already built; it also returns what the
command draws (the forecast in dBZ, the input frames, the method), as a ``Forecast``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from .caveats import model_caveats
from .errors import NowcastError
from .forecast_file import forecast_dataarray, output_units as parse_output_units, to_cf_dataset
from .forecast_io import ForecastInput, ForecastOutput
from .forecast_method import ForecastMethod
from .methods import resolve
from .options import ModelOptions
from .radar import last_regular_frames, open_radar, time_step
from .timeaxis import minutes

SEQUENCE_DIMS = ("time", "y", "x")
DATAARRAY_LABEL = "the source DataArray"
MAX_LEADS = 100


@dataclass(frozen=True)
class Forecast:
    """One forecast and what it was made from.

    dataset: the CF-1.8 Dataset the forecast file holds (``nowcast predict`` writes exactly this);
    frames: the forecast in dBZ (time, y, x) at its valid times, before any conversion to the file's units;
    inputs: the whole sequence read; past: the frames the method read; units: the file's units (dBZ or mm/h);
    input, output: what the method read and gave (``forecast_io``: the motion, valid times, provenance);
    caveats: what a forecaster should know about the method on this input (``caveats.model_caveats``);
    step_minutes: the step between frames.
    """

    dataset: xr.Dataset
    frames: xr.DataArray
    inputs: xr.DataArray
    past: xr.DataArray
    method: ForecastMethod
    units: str
    input: ForecastInput
    output: ForecastOutput
    caveats: tuple[str, ...]
    step_minutes: float


def step_minutes(seq: xr.DataArray) -> float:
    """A sequence's regular time step in minutes (NaN for a single frame, which has none)."""
    return minutes(time_step(seq)) if seq.sizes["time"] > 1 else float("nan")


def check_leads(leads) -> int:
    """The number of frames to forecast: a whole number from 1 to MAX_LEADS (NowcastError naming ``leads``)."""
    if isinstance(leads, bool) or not isinstance(leads, (int, np.integer)) or not 1 <= leads <= MAX_LEADS:
        raise NowcastError(f"leads must be a whole number from 1 to {MAX_LEADS}, got {leads!r}")
    return int(leads)


def source_label(source) -> str:
    """How messages name a source: the file, the first file and how many more, or the DataArray."""
    if isinstance(source, xr.DataArray):
        return DATAARRAY_LABEL
    if isinstance(source, (str, Path)):
        return str(source)
    paths = list(source)
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"


def read_source(source, reading: dict | None = None) -> xr.DataArray:
    """The radar sequence (time, y, x) in float32 dBZ: a DataArray as it is (it must be laid out so), or the
    file(s) or glob read by ``radar.open_radar`` with the ``reading`` options (variable, units, scale, ...)."""
    if not isinstance(source, xr.DataArray):
        if isinstance(source, (str, Path)):
            source = [source]
        return open_radar([str(p) for p in source], **(reading or {}))
    if reading:
        raise NowcastError(f"reading options ({', '.join(reading)}) apply to files, not to a DataArray")
    if source.dims != SEQUENCE_DIMS or "time" not in source.coords:
        raise NowcastError(f"must have the dimensions {SEQUENCE_DIMS} and a time coordinate, got {source.dims}",
                           DATAARRAY_LABEL)
    return source if source.dtype == np.float32 else source.astype(np.float32)


def run(seq: xr.DataArray, method: ForecastMethod, leads: int = 10, output_units: str | None = None,
        label=None, notes: Callable[[str], None] | None = None) -> Forecast:
    """Forecast ``leads`` frames after the sequence with ``method``, as the file ``nowcast predict`` writes.

    The method reads the last ``method.input_frames`` frames (at least 2, for the time step), which must be
    evenly spaced: a gap among them is refused (NowcastError naming ``label``), never bridged.
    output_units: dBZ or mm/h; None = the input's kind (rain rate in, rain rate out).
    notes: called with each caveat about the method on this input before the forecast is computed (a long
    one can take minutes); the caveats are in the result too.
    """
    check_leads(leads)
    units = parse_output_units(output_units, seq)
    step = step_minutes(seq)
    caveats = tuple(model_caveats(method, leads, step if np.isfinite(step) else None))
    for line in caveats if notes is not None else ():
        notes(line)
    past = last_regular_frames(seq, max(method.input_frames, 2), label)
    inp = ForecastInput.from_sequence(past, motion=method.uses_motion)  # the flow, once, for whoever advects
    out = method.forecast(inp, leads)
    frames = forecast_dataarray(out.values, past, out.method)
    dataset = to_cf_dataset(frames, out.method, seq, units=units, postprocessing=out.postprocessing)
    return Forecast(dataset=dataset, frames=frames, inputs=seq, past=past, method=method, units=units, input=inp,
                    output=out, caveats=caveats, step_minutes=step)


def predict(source, *, method: str | None = None, model: str | None = None, leads: int = 10,
            output_units: str | None = None, prob_match: bool = False, lead_smoothing: float | None = None,
            device: str = "auto", precision: str = "fp32", tile_size: int | None = None,
            reading: dict | None = None) -> xr.Dataset:
    """The forecast file ``nowcast predict`` writes, as an xarray Dataset (CF-1.8, encodings set).

    source: a radar file, a list of files, a glob of per-frame files, or a (time, y, x) DataArray in dBZ (as
    ``open_radar`` gives). method/model: as ``methods.resolve`` (neither: the default method). leads: frames
    forecast. output_units: dBZ or mm/h (None: the input's kind). prob_match, lead_smoothing, device, precision,
    tile_size: the forecast options (``methods.resolve``). reading: keyword arguments of ``open_radar``.
    Values are float32 before the file's int16 packing (0.01 dBZ steps); the file reads back to within half a step.
    """
    check_leads(leads)  # refused before anything is loaded or read
    parse_output_units(output_units)
    options = ModelOptions(device=device, precision=precision, tile_size=tile_size, lead_smoothing=lead_smoothing,
                           prob_match=prob_match)
    fc_method = resolve(method, model, options)
    seq = read_source(source, reading)
    return run(seq, fc_method, leads, output_units, source_label(source)).dataset
