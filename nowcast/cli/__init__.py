"""The `nowcast` command line: parses options, calls the library, prints with rich.

No logic of its own: every command is a few calls into nowcast's modules. Bad input raises
`NowcastError`, which `main` turns into one red line on stderr and exit code 2 (no traceback
unless --debug). Usage errors (a missing argument, an unknown command, a bad option value) get
the same treatment. One module per command; `common` holds the app and the shared options.
"""

from __future__ import annotations

import sys
import warnings

import typer
from rich.markup import escape

from ..errors import NowcastError, NowcastWarning
from . import evaluate, predict, sample, train, trend, watch  # noqa: F401  (registers the commands)
from .common import _show_warning, app, err, out

__all__ = ["app", "main", "run"]

PROG_NAME = "nowcast"
USAGE_EXIT_CODE = 2


def main(argv=None) -> int:
    """Console entry point: user errors become one red line and exit code 2."""
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", NowcastWarning)
    args = list(argv) if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name=PROG_NAME, standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code) comes back as a return value here
            return code
    except NowcastError as exc:
        if debug:  # the traceback too, and the same exit code
            _traceback()
        _error(_as_flags(exc))
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        return 130
    except OSError as exc:  # e.g. permission denied or disk full while writing an output
        if debug:
            _traceback()
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")
        return 2
    except Exception as exc:
        if _is_usage_error(exc):
            return _report_usage_error(exc)
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err.print(f"[red]internal error:[/] {escape(f'{type(exc).__name__}: {first}')} "
                  "(rerun with --debug for details)")
        return 1
    return 0


def _as_flags(exc: NowcastError) -> str:
    """The error's message, with the library's parameter names (lead_smoothing) spelled as flags (--lead-smoothing)."""
    from ..options import OptionError

    if isinstance(exc, OptionError):
        return exc.text(lambda parameter: "--" + parameter.replace("_", "-"))
    return str(exc)


def _traceback() -> None:
    """The current exception's traceback on stderr (--debug), before its one-line message."""
    import traceback

    err.print(traceback.format_exc().rstrip(), markup=False, highlight=False)


def _error(message: str) -> None:
    err.print(f"[red]error:[/] {escape(message)}")


def _is_usage_error(exc: BaseException) -> bool:
    """Typer's (or click's) usage errors, recognised without importing click (typer >= 0.29 has none)."""
    return hasattr(exc, "exit_code") and callable(getattr(exc, "format_message", None))


def _report_usage_error(exc) -> int:
    """One line: what is wrong, and where the help is. Bare `nowcast` prints the help instead."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        out.print(ctx.get_help(), markup=False, highlight=False)
        return USAGE_EXIT_CODE
    message = " ".join(exc.format_message().split())
    command = ctx.command_path if ctx is not None else PROG_NAME
    _error(f"{message} (see '{command} --help')")
    code = getattr(exc, "exit_code", USAGE_EXIT_CODE)
    return code if isinstance(code, int) and code else USAGE_EXIT_CODE


def run() -> None:
    sys.exit(main())
