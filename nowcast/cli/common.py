"""What every command shares: the Typer app, the consoles, radar-reading options, output checks.

No logic of its own: every command is a few calls into nowcast's modules. Which forecast method runs
is decided by `nowcast.methods` (resolve, check_spec, default_spec), never here. Bad input raises
`NowcastError`, which `main` turns into one red line on stderr and exit code 2 (no traceback
unless --debug). Text that comes from the user (paths, names) is escaped before rich prints it, so
square brackets in `fc[v2].nc` or `nowcast[...]` survive.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..version import __version__
from ..errors import NowcastError, NowcastNote, NowcastWarning

COMMAND_WORDS = ("nowcast ", "torchrun ", "python ")


class _Command(typer.core.TyperCommand):
    """A command whose --help shows the example commands of its epilog one per line, never rewrapped at the
    terminal's width, so that each copies and pastes whole; the epilog's prose is wrapped as usual."""

    def format_epilog(self, ctx, formatter) -> None:
        if not self.epilog:
            return
        for paragraph in inspect.cleandoc(self.epilog).split("\n\n"):
            lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
            formatter.write_paragraph()
            with formatter.indentation():
                if lines and all(line.startswith(COMMAND_WORDS) for line in lines):
                    for line in lines:
                        formatter.write(f"{'':>{formatter.current_indent + 2}}{line}\n")
                else:
                    formatter.write_text(" ".join(lines))


def _argument_without_type(self, ctx) -> str:
    return ""


# typer prints the Python type beside every argument in --help ('RADAR_FILE <list[Path]>'); the help text says
# what an argument is, and Python types mean nothing to a user
typer.core.TyperArgument.display_type_rich = _argument_without_type


class _App(typer.Typer):
    """The Typer app, with every command a ``_Command`` (examples never rewrapped)."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rich mode prints type noise such as <bool> and <str> beside every option.
    rich_markup_mode=None,
    help="Precipitation nowcasting from weather radar: forecast, verify, train, visualise.",
    # option descriptions use up to 120 columns of a wide terminal (click's default stops at 80)
    context_settings={"max_content_width": 120},
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
FORMAT = typer.Option(None, "--format", metavar="NAME",
                      help="The input files' format: netcdf, odim, knmi, pgm, geotiff or mch-gif. Default: found "
                           "from each file's content.")
LAZY = typer.Option(None, "--lazy/--eager",
                    help="Read frames from the files only when a window needs them (--lazy: memory stays flat "
                         "however long the archive), or all at once (--eager). Default: lazy when a sequence's "
                         "frames would take over 1 GiB.", show_default=False)


@dataclass(frozen=True)
class Reading:
    """How a command reads radar files: the options that every reading command shares, as one value."""

    variable: Optional[str] = None
    units: Optional[str] = None
    scale: Optional[float] = None
    offset: Optional[float] = None
    select: Optional[List[str]] = None
    reduce: Optional[str] = None
    format: Optional[str] = None
    lazy: Optional[bool] = None

    def open(self, paths):
        """The files (or globs) as one reflectivity sequence (``nowcast.radar.open_radar``)."""
        from ..radar import open_radar  # xarray and netCDF4: not needed for --help

        return open_radar([str(p) for p in paths], variable=self.variable, units=self.units, scale=self.scale,
                          offset=self.offset, select=_parse_select(self.select), reduce=self.reduce, lazy=self.lazy,
                          format=self.format)


def reading_parameters(lazy: bool = False) -> list[inspect.Parameter]:
    """The reading options as command parameters (``--lazy/--eager`` for commands that read whole archives)."""
    rows = [("variable", Optional[str], VARIABLE), ("units", Optional[str], UNITS), ("scale", Optional[float], SCALE),
            ("offset", Optional[float], OFFSET), ("select", Optional[List[str]], SELECT),
            ("reduce", Optional[str], REDUCE), ("format", Optional[str], FORMAT)]
    rows += [("lazy", Optional[bool], LAZY)] if lazy else []
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann)
            for name, ann, option in rows]


def pop_reading(kwargs: dict) -> Reading:
    """The reading options taken out of a command's keyword arguments."""
    return Reading(**{f.name: kwargs.pop(f.name) for f in fields(Reading) if f.name in kwargs})


def reads_radar(lazy: bool = False):
    """Give a command the shared reading options; it receives them as one ``reading: Reading`` argument."""

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "reading"]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

        @functools.wraps(command)
        def with_reading(**kwargs):
            reading = pop_reading(kwargs)
            return command(**kwargs, reading=reading)

        # in --help the reading options come before the run options (device, precision, ...)
        at = next((i for i, p in enumerate(own) if p.name in ("device", "precision", "overwrite")), len(own))
        with_reading.__signature__ = inspect.Signature(own[:at] + reading_parameters(lazy) + own[at:])
        return with_reading

    return decorate


DEVICE = typer.Option("auto", "--device", metavar="DEVICE", help="auto (CUDA when present), cpu or cuda.")
PRECISION = typer.Option("fp32", "--precision", metavar="fp32|bf16|fp16|auto",
                         help="Model arithmetic: fp32; bf16 (faster where supported); fp16 (GPU only); auto (bf16 or "
                              "fp16 on a GPU, fp32 on a CPU). Models only.")
PROB_MATCH = typer.Option(False, "--prob-match", help="Match each forecast frame's distribution of values to the "
                                                      "last observation's (probability matching).")
LEAD_SMOOTHING = typer.Option(None, "--lead-smoothing", min=0.0, metavar="PIXELS",
                              help="Smooth a model's forecast in linear Z with a Gaussian of this many pixels per "
                                   "lead (lead k: k x PIXELS); 0 = the network's forecast as it is. Default: what "
                                   "the model's card recommends (the shipped default model: 0.5). Models only.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace output files that exist already.")
