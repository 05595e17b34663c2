"""Score tables for the terminal: an evaluation result as a rich Table (presentation only; the scores come
from ``nowcast.evaluate``)."""

from __future__ import annotations

import math

from rich.markup import escape
from rich.table import Table

from ..evaluate import EvaluationResult
from ..verify import threshold_key


# columns of the table: (header, getter of a MethodResult, higher_is_better)
def _columns(result: EvaluationResult):
    keys = [threshold_key(t) for t in result.thresholds]
    mid = keys[len(keys) // 2]  # POD and FAR at the middle threshold keep the table narrow
    cols = [(f"CSI≥{k}", lambda m, k=k: m.scores.at(k).csi, True) for k in keys]
    cols += [
        (f"POD≥{mid}", lambda m: m.scores.at(mid).pod, True),
        (f"FAR≥{mid}", lambda m: m.scores.at(mid).far, False),
        ("GDL", lambda m: m.scores.gdl, False),
        ("MSE", lambda m: m.scores.mse, False),
        ("MAE", lambda m: m.scores.mae, False),
        ("SSIM", lambda m: m.scores.ssim, True),
        ("coverage", lambda m: _coverage(m), None),
        ("invented≥40", lambda m: m.invented.pooled if m.invented is not None else None, False),
        ("s/window", lambda m: m.seconds_per_window, False),
    ]
    return cols


def _coverage(m):
    return m.coverage.pooled if m.coverage is not None else None


DOMAIN_TEXT = {
    "observed": "every method on every observed pixel; a missing forecast counts as no echo",
    "common": "every method on the pixels all of them forecast",
}


def _value(x):
    return float(x) if x is not None and math.isfinite(float(x)) else None


def score_table(result: EvaluationResult, title: str | None = None) -> Table:
    """A rich Table: one row per method; CSI at every threshold, POD and FAR at the middle threshold,
    GDL, MSE, MAE (dBZ), SSIM, coverage (pooled) and seconds per window; the best score in each column in bold."""
    if title is None:
        step = result.time_step_minutes
        step_txt = f", {step:g} min steps" if isinstance(step, (int, float)) else ""
        title = (f"{result.windows} windows ({result.input_frames} -> {result.lead_frames} frames"
                 f"{step_txt}); thresholds in dBZ, MSE/MAE in dBZ\nscored: {DOMAIN_TEXT[result.domain]}; "
                 "coverage: share of observed pixels forecast; invented≥40: share of forecast pixels >= 40 dBZ "
                 "with no echo >= 35 dBZ within 10 km in the advected last input")
    table = Table(title=title)
    table.add_column("method")
    cols = _columns(result)
    for header, _, _ in cols:
        table.add_column(header, justify="right")
    values = [[_value(get(m)) for _, get, _ in cols] for m in result.methods]
    best = []
    for j, (_, _, higher) in enumerate(cols):
        finite = [v[j] for v in values if v[j] is not None]
        best.append((max(finite) if higher else min(finite)) if finite and higher is not None else None)
    for m, vals in zip(result.methods, values):
        cells = []
        for j, v in enumerate(vals):
            if v is None:
                cells.append("–")
                continue
            digits = 2 if cols[j][0] in ("MSE", "MAE") else 4 if cols[j][0] == "s/window" else 3
            text = f"{100 * v:.1f} %" if cols[j][0] in ("coverage", "invented≥40") else f"{v:.{digits}f}"
            cells.append(f"[bold]{text}[/bold]" if len(values) > 1 and v == best[j] else text)
        table.add_row(escape(m.name), *cells)  # a model path may hold [brackets]
    return table


def coverage_table(result: EvaluationResult) -> Table:
    """A rich Table: one row per method, its coverage (the share of observed pixels it forecast) per lead and
    pooled, in percent; '–' where a method reports none or a lead had no observed pixel."""
    return _per_lead_percent_table(result, "coverage: % of observed pixels forecast, by lead", "coverage")


def invented_table(result: EvaluationResult) -> Table:
    """A rich Table: one row per method, the share of its forecast pixels >= 40 dBZ that have no source in the
    advected last input (``nowcast.invented``) per lead and pooled, in percent; '–' where it forecast none."""
    return _per_lead_percent_table(result, "invented heavy echo: % of forecast pixels >= 40 dBZ with no echo "
                                           ">= 35 dBZ within 10 km in the advected last input, by lead", "invented")


def _per_lead_percent_table(result: EvaluationResult, title: str, figure: str) -> Table:
    step = result.time_step_minutes
    minutes = isinstance(step, (int, float))
    table = Table(title=title + (" time (min)" if minutes else ""))
    table.add_column("method")
    for lead in range(1, result.lead_frames + 1):
        header = f"+{lead * step:g}" if minutes else f"{lead}"
        table.add_column(header, justify="right")
    table.add_column("all", justify="right")
    for m in result.methods:
        per_method = getattr(m, figure)
        if per_method is None:
            values = [None] * (result.lead_frames + 1)
        else:
            values = [*per_method.per_lead, per_method.pooled]
        table.add_row(escape(m.name), *(_percent(v) for v in values))
    return table


def _percent(v) -> str:
    v = _value(v)
    return "–" if v is None else f"{100 * v:.1f}"
