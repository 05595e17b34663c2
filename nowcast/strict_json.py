"""Strict JSON for results: undefined scores (NaN, infinities) become null, numpy values plain Python.

The one cleaner for every JSON nowcast writes (evaluation results, training logs, checkpoint metadata):
``json.dumps(..., allow_nan=False)`` then never meets a NaN token that strict readers refuse.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np


def json_safe(obj):
    """`obj` with NaN and infinities as None, numpy scalars and arrays as Python numbers and lists,
    tuples as lists, dict keys as strings and typed results (dataclasses with ``to_dict()``, such as
    nowcast.verify.Scores) as their dicts; anything else unchanged."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    """Strict JSON text of `obj` (see `json_safe`)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)
