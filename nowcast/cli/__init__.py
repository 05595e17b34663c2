"""The `nowcast` command line: parses options, calls the library, prints with rich.

No logic of its own: every command is a few calls into nowcast's modules. Bad input raises
`NowcastError`, which `main` turns into one red line on stderr and exit code 2 (no traceback
unless --debug). One module per command; `common` holds the app and the shared options.
"""

from __future__ import annotations

import sys
import warnings

import typer

from ..errors import NowcastError, NowcastWarning
from . import evaluate, predict, sample, train, trend  # noqa: F401  (registers the commands)
from .common import _show_warning, app, err

__all__ = ["app", "main", "run"]


def main(argv=None) -> int:
    """Console entry point: user errors become one red line and exit code 2."""
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", NowcastWarning)
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code) comes back as a return value here
            return code
    except NowcastError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
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
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"[red]error:[/] {where}{exc.strerror or exc}", markup=True, highlight=False)
        return 2
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err.print(f"[red]internal error:[/] {type(exc).__name__}: {first} (rerun with --debug for details)",
                  markup=True, highlight=False)
        return 1
    return 0


def run() -> None:
    sys.exit(main())
