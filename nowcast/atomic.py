"""Atomic file writing: write to a temporary name in the same folder, rename when complete.

A reader (or a crash) never sees half a file: either the old file, or the complete new one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path

from .errors import NowcastError
from .options import OptionError


def check_output_path(path, overwrite: bool = False) -> Path:
    """Refuse outputs in missing folders, or over existing files unless overwrite is set."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NowcastError(f"output folder {parent} does not exist", path)
    if path.exists() and not overwrite:
        raise OptionError("output file exists already (use {overwrite} to replace it)", "overwrite", path=path)
    if path.is_dir():
        raise NowcastError("output path is a folder", path)
    return path


@contextlib.contextmanager
def atomic_output(path, overwrite: bool = True):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    The temporary name keeps the suffix so that libraries choosing a format by extension work.
    """
    path = check_output_path(path, overwrite=overwrite)
    parent = path.parent if str(path.parent) else Path(".")
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".part{path.suffix}", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give the result the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        # Writers such as safetensors recreate the file privately; give the result the usual mode.
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries left beside `path` by writers that were killed (their process is gone).

    A killed process cannot clean up after itself; its temporary keeps the writer's pid in its name,
    so the next writer of the same file can tell a dead writer's leftovers from a live one's.
    """
    parent = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    for leftover in parent.glob(f"{glob.escape(prefix)}*.part*"):
        pid_text = leftover.name[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(path, data: bytes, overwrite: bool = True) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path, text: str, overwrite: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
