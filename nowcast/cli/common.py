"""What every command shares: the Typer app, the consoles, radar-reading options, output checks.

No logic of its own: every command is a few calls into nowcast's modules. Which forecast method runs
is decided by `nowcast.methods` (resolve, check_spec, default_spec), never here. Bad input raises
`NowcastError`, which `main` turns into one red line on stderr and exit code 2 (no traceback
unless --debug). Text that comes from the user (paths, names) is escaped before rich prints it, so
square brackets in `fc[v2].nc` or `nowcast[...]` survive.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..errors import NowcastError, NowcastNote, NowcastWarning

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rich mode prints type noise such as <bool> and <str> beside every option.
    rich_markup_mode=None,
    help="Precipitation nowcasting from weather radar: forecast, verify, train, visualise.",
)
out = Console(soft_wrap=True)
if not out.is_terminal:  # pipes and CI logs: don't squeeze score tables into 80 columns
    out.width = 160
err = Console(stderr=True, highlight=False, soft_wrap=True)

PICTURE_SUFFIXES_HINT = ".png, .pdf or .svg"
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


# ------------------------------------------------------------------------------- printing


def say(text: str) -> None:
    """Print a plain message on stdout; brackets in file names are kept."""
    out.print(escape(str(text)))


def note(text: str) -> None:
    """One yellow 'note:' line on stderr."""
    err.print(f"[yellow]note:[/] {escape(str(text))}")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, NowcastNote):
        note(str(message))
    elif issubclass(category, NowcastWarning):
        err.print(f"[yellow]warning:[/] {escape(str(message))}")
    else:
        err.print(f"warning: {message}", markup=False)


def _version_callback(value: bool):
    if value:
        out.print(f"nowcast {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
):
    # `main` reads --debug from the arguments itself (it must know before typer parses them); the
    # option is declared here so that typer accepts it and --help lists it.
    pass


# ------------------------------------------------------------------------------- checks made before any work


def check_picture_path(path: Optional[Path], option: str) -> None:
    """Refuse a picture name whose suffix matplotlib cannot write, before anything is computed."""
    if path is None:
        return
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FigureCanvasBase.get_supported_filetypes():
        raise NowcastError(f"{option} cannot write a {path.suffix or 'suffix-less'} picture; "
                           f"name it {PICTURE_SUFFIXES_HINT}", path)


def check_suffix(path: Optional[Path], option: str, suffixes: tuple, kind: str) -> None:
    """Refuse an output whose suffix does not match the format nowcast writes for `option`."""
    if path is not None and path.suffix.lower() not in suffixes:
        raise NowcastError(f"{option} writes {kind}; name it {' or '.join(suffixes)}", path)


def check_outputs(paths, overwrite: bool) -> None:
    """Every output: its folder exists, it is not there already (unless --overwrite), no name twice."""
    from ..atomic import check_output_path

    given = [Path(p) for p in paths if p is not None]
    seen = set()
    for path in given:
        key = path.resolve()
        if key in seen:
            raise NowcastError("is named for two outputs; give each output its own file", path)
        seen.add(key)
        check_output_path(path, overwrite=overwrite)


# ------------------------------------------------------------------------------- reading


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


def _open(paths, variable, units, scale, offset, select, reduce, lazy=None):
    from ..radar import open_radar

    return open_radar([str(p) for p in paths], variable=variable, units=units, scale=scale,
                      offset=offset, select=_parse_select(select), reduce=reduce, lazy=lazy)


def input_label(paths) -> str:
    """How messages name the inputs: the file, or the first file and how many more."""
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"


# Options shared by every command that reads radar files.
VARIABLE = typer.Option(None, "--variable", metavar="NAME", help="Data variable to read (when a file has several).")
UNITS = typer.Option(None, "--units", metavar="UNITS",
                     help="Declare the input data's units: dBZ, mm/h, mm (accumulation) or pixels.")
SCALE = typer.Option(None, "--scale", metavar="NUMBER", help="8-bit pixels: dBZ = pixel * SCALE + OFFSET "
                                                             "(default 95/255).")
OFFSET = typer.Option(None, "--offset", metavar="NUMBER", help="8-bit pixels: the OFFSET above (default -10).")
SELECT = typer.Option(None, "--select", metavar="DIM=INDEX", help="Pick one index of an extra dimension, "
                                                                  "e.g. elevation=0.")
REDUCE = typer.Option(None, "--reduce", metavar="max|mean", help="Combine an extra dimension: max or mean.")
LAZY = typer.Option(None, "--lazy/--eager",
                    help="Read frames from the files only when a window needs them (--lazy: memory stays flat "
                         "however long the archive), or all at once (--eager). Default: lazy when a sequence's "
                         "frames would take over 1 GiB.", show_default=False)
DEVICE = typer.Option("auto", "--device", metavar="DEVICE", help="auto (CUDA when present), cpu or cuda.")
PRECISION = typer.Option("fp32", "--precision", metavar="fp32|bf16",
                         help="Model arithmetic: fp32, or bf16 (faster where supported; models only).")
PROB_MATCH = typer.Option(False, "--prob-match", help="Match each forecast frame's distribution of values to the "
                                                      "last observation's (probability matching).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace output files that exist already.")
