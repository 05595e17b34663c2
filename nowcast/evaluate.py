"""Score several forecast methods on exactly the same windows of one or more radar sequences.

Methods get full frames (nothing is resized or cropped) and are timed per window. The result is a
plain dict (see `evaluate`), written as strict JSON by `to_json` and shown by `format_table`.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from . import strict_json
from .errors import NowcastError
from .verify import DEFAULT_THRESHOLDS, ScoreAccumulator, normalize_thresholds, threshold_key
from .windows import iter_windows


def common_targets(targets: np.ndarray, forecasts) -> np.ndarray:
    """The targets with NaN wherever some method has no forecast, so every method is scored on the same pixels.

    Methods that advect (extrapolation, Lagrangian models) have no forecast where the trajectory comes from
    beyond the grid; persistence has one everywhere. Scoring each on its own pixels would compare them on
    different areas.
    """
    missing = np.zeros(targets.shape, dtype=bool)
    for fc in forecasts:
        missing |= np.isnan(fc)
    return np.where(missing, np.nan, targets) if missing.any() else targets


def evaluate(
    sequences: Sequence[tuple[str, object]],
    methods: Sequence,
    thresholds=DEFAULT_THRESHOLDS,
    n_in: int = 5,
    n_out: int = 10,
    stride: int = 1,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run every method on every window of every sequence and score it against the targets.

    sequences: (name, DataArray (time, y, x) in dBZ) pairs. methods: ForecastMethod-like callables
    `method(inputs (B, n_in, H, W), n_out) -> (B, n_out, H, W)` with a unique `.name`.
    progress: called as progress(windows_done, windows_total) after each batch.

    Returns {"windows", "skipped_windows", "too_short_sequences", "input_frames", "lead_frames",
    "time_step_minutes", "thresholds_dbz", "data", "data_windows", "results": {method name: scores}},
    scores as ScoreAccumulator.result() plus "seconds_per_window". Every method is scored on the same
    pixels: those where the radar has data and every method has a forecast (``common_targets``).
    Raises NowcastError when no sequence yields a single window.
    """
    thresholds = normalize_thresholds(thresholds)
    methods = list(methods)
    if not methods:
        raise NowcastError("no forecast method to evaluate")
    names = [getattr(m, "name", type(m).__name__) for m in methods]
    if len(set(names)) != len(names):
        raise NowcastError(f"method names must be unique, got {names}")
    if batch_size < 1:
        raise NowcastError(f"batch size must be at least 1, got {batch_size}")

    window_sets = [(name, iter_windows(seq, n_in=n_in, n_out=n_out, stride=stride)) for name, seq in sequences]
    total = sum(ws.count for _, ws in window_sets)
    skipped = sum(ws.skipped for _, ws in window_sets)
    too_short = [name for name, ws in window_sets if ws.too_short]
    if total == 0:
        why = []
        if not window_sets:
            why.append("no input sequences")
        if too_short:
            why.append(f"{len(too_short)} sequence(s) shorter than {n_in + n_out} frames "
                       f"({n_in} inputs + {n_out} targets): {', '.join(too_short)}")
        if skipped:
            why.append(f"{skipped} window(s) skipped because they span gaps in time")
        raise NowcastError("nothing to evaluate: 0 complete windows (" + "; ".join(why or ["no windows"]) + ")")

    accs = {name: ScoreAccumulator(thresholds, n_out) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    done = 0
    for data_name, ws in window_sets:
        for inputs, targets, _ in ws.batches(batch_size):
            forecasts = {}
            for name, method in zip(names, methods):
                t0 = time.perf_counter()
                fc = method(inputs, n_out)
                seconds[name] += time.perf_counter() - t0
                fc = np.asarray(fc)
                if fc.shape != targets.shape:
                    raise NowcastError(
                        f"method {name} returned shape {fc.shape} for {data_name}, expected {targets.shape}"
                    )
                forecasts[name] = fc
            common = common_targets(targets, forecasts.values())
            for name in names:
                accs[name].update(forecasts[name], common)
            done += len(inputs)
            if progress is not None:
                progress(done, total)

    steps = [ws.step_minutes for _, ws in window_sets if ws.count]
    unique_steps = sorted(set(steps))
    results = {}
    for name in names:
        r = accs[name].result()
        r["seconds_per_window"] = seconds[name] / total
        results[name] = r
    return {
        "windows": total,
        "skipped_windows": skipped,
        "too_short_sequences": too_short,
        "input_frames": n_in,
        "lead_frames": n_out,
        # one number when every scored sequence has the same step, else one per scored sequence
        "time_step_minutes": unique_steps[0] if len(unique_steps) == 1 else steps,
        "thresholds_dbz": [_plain_number(t) for t in thresholds],
        "data": [name for name, _ in window_sets],
        "data_windows": {name: {"windows": ws.count, "skipped_windows": ws.skipped} for name, ws in window_sets},
        "results": results,
    }


def _plain_number(t: float):
    return int(t) if float(t).is_integer() else float(t)


def to_json(result: dict, indent: int | None = 2) -> str:
    """Strict JSON (no NaN/Infinity tokens: undefined scores are null)."""
    return strict_json.dumps(result, indent=indent)


# columns of the table: (header, getter, higher_is_better)
def _columns(result: dict):
    keys = [threshold_key(t) for t in result["thresholds_dbz"]]
    mid = keys[len(keys) // 2]  # POD and FAR at the middle threshold keep the table narrow
    cols = [(f"CSI≥{k}", lambda r, k=k: r["csi"][k], True) for k in keys]
    cols += [
        (f"POD≥{mid}", lambda r: r["pod"][mid], True),
        (f"FAR≥{mid}", lambda r: r["far"][mid], False),
        ("GDL", lambda r: r["gdl"], False),
        ("MSE", lambda r: r["mse"], False),
        ("MAE", lambda r: r["mae"], False),
        ("SSIM", lambda r: r["ssim"], True),
        ("s/window", lambda r: r["seconds_per_window"], False),
    ]
    return cols


def _value(x):
    return float(x) if x is not None and math.isfinite(float(x)) else None


def format_table(result: dict, title: str | None = None):
    """A rich Table: one row per method; CSI at every threshold, POD and FAR at the middle threshold,
    GDL, MSE, MAE (dBZ), SSIM and seconds per window; the best value in each column in bold."""
    from rich.markup import escape
    from rich.table import Table

    if title is None:
        step = result.get("time_step_minutes")
        step_txt = f", {step:g} min steps" if isinstance(step, (int, float)) else ""
        title = (f"{result['windows']} windows ({result['input_frames']} -> {result['lead_frames']} frames"
                 f"{step_txt}); thresholds in dBZ, MSE/MAE in dBZ")
    table = Table(title=title)
    table.add_column("method")
    cols = _columns(result)
    for header, _, _ in cols:
        table.add_column(header, justify="right")
    rows = list(result["results"].items())
    values = [[_value(get(r)) for _, get, _ in cols] for _, r in rows]
    best = []
    for j, (_, _, higher) in enumerate(cols):
        finite = [v[j] for v in values if v[j] is not None]
        best.append((max(finite) if higher else min(finite)) if finite else None)
    for (name, _), vals in zip(rows, values):
        cells = []
        for j, v in enumerate(vals):
            if v is None:
                cells.append("–")
                continue
            digits = 2 if cols[j][0] in ("MSE", "MAE") else 4 if cols[j][0] == "s/window" else 3
            text = f"{v:.{digits}f}"
            cells.append(f"[bold]{text}[/bold]" if len(rows) > 1 and v == best[j] else text)
        table.add_row(escape(name), *cells)  # a model path may hold [brackets]
    return table
