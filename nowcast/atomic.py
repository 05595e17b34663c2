"""Atomic file writing: write to a temporary name in the same folder, rename when complete.

A reader (or a crash) never sees half a file: either the old file, or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import NowcastError


def check_output_path(path, overwrite: bool = False) -> Path:
    """Refuse outputs in missing folders, or over existing files unless overwrite is set."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NowcastError(f"output folder {parent} does not exist", path)
    if path.exists() and not overwrite:
        raise NowcastError("output file exists already (use --overwrite to replace it)", path)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give the result the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path, data: bytes, overwrite: bool = True) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path, text: str, overwrite: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
