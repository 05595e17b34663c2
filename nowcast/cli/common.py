"""What every command shares: the Typer app, the consoles, radar-reading options, method loading.

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

from .. import __version__
from ..errors import NowcastError, NowcastWarning

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
    from ..radar import open_radar

    return open_radar([str(p) for p in paths], variable=variable, units=units, scale=scale,
                      offset=offset, select=_parse_select(select), reduce=reduce)


def _load_method(method: Optional[str], model: Optional[str], device: str, precision: str = "fp32"):
    """The forecast method object: a trained model, or a built-in baseline by name.

    No method and no model: see `_default_method`.
    """
    from ..methods import get_method

    if method is None and model is None:
        method = _default_method()
    if model is not None or method == "model":
        from ..checkpoint import DEFAULT_MODEL_NAME
        from ..forecast import ModelForecaster

        return ModelForecaster.from_checkpoint(model or DEFAULT_MODEL_NAME, device=device, precision=precision)
    return get_method(method or "extrapolation")


def _default_method() -> str:
    """The shipped model once its card says it beats the baselines, else extrapolation (else persistence)."""
    from ..checkpoint import default_model_path, read_checkpoint  # imports torch

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
