"""pysteps for the baselines that call it: imported quietly, or a MissingDependencyError naming what to install."""

from __future__ import annotations

import contextlib
import importlib
import io

from ..errors import MissingDependencyError


def import_pysteps(module: str):
    """A pysteps submodule, or MissingDependencyError naming what to install."""
    try:
        # pysteps prints where it found its configuration file on import; keep stdout clean
        with contextlib.redirect_stdout(io.StringIO()):
            mod = importlib.import_module(f"pysteps.{module}")
        import cv2  # noqa: F401  (pysteps' Lucas-Kanade needs OpenCV)
    except ImportError as exc:
        raise MissingDependencyError(
            "optical-flow methods need pysteps and OpenCV: pip install pysteps opencv-python-headless"
        ) from exc
    return mod
