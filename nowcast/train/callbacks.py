"""What the training loop reports and keeps: progress events, the best checkpoint, the CSV/JSONL log.

The library draws nothing: a progress display (the CLI's rich bar, a notebook's print) is any callable
that receives ``ProgressEvent``s.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..atomic import atomic_write_text
from ..errors import NowcastError
from ..strict_json import json_safe
from .objectives import is_better, parse_metric

LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"


@dataclass
class ProgressEvent:
    """What the training loop tells its progress callback.

    kind: "start" | "step" | "validation" | "checkpoint" | "end". ``loss`` is the loss of the iteration
    just done and ``it_per_s`` a smoothed recent speed (step events come every iteration); ``logged`` is the
    row written to log.csv at this iteration, if one was (its ``loss`` and ``it_per_s`` are means since the
    previous row). Validation events carry ``scores`` (the model's, with "metric") and ``baselines``
    ({method name: scores with "metric"}, scored on the same windows).
    """

    kind: str
    iteration: int
    total: int
    start_iteration: int = 0
    loss: float | None = None
    lr: float | None = None
    it_per_s: float | None = None
    eta_s: float | None = None
    truth_probability: float | None = None
    scores: dict | None = None
    baselines: dict | None = None
    message: str | None = None
    logged: dict | None = None


def progress_callback(progress) -> Callable[[ProgressEvent], None] | None:
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    raise NowcastError(f"progress must be None or a callable that takes ProgressEvents, got {progress!r}")


class BestCheckpoint:
    """Keeps the best validation so far by one metric (e.g. pooled csi30+csi40) and says when it improves."""

    def __init__(self, metric: str, saved: dict | None = None):
        self.metric = metric
        self.terms, self.higher_better = parse_metric(metric)
        saved = saved or {}
        self.iteration = saved.get("iteration")
        self.value = saved.get("value")
        self.scores = saved.get("scores")

    def offer(self, iteration: int, value: float, scores: dict) -> bool:
        """Record this validation if it is the first or beats the best; True when it did."""
        if self.iteration is not None and not is_better(value, self.value, self.higher_better):
            return False
        self.iteration, self.value, self.scores = iteration, value, scores
        return True

    def as_dict(self) -> dict:
        return {"iteration": self.iteration, "metric": self.metric, "value": self.value, "scores": self.scores}


def baseline_columns(baselines, thresholds) -> list[str]:
    keys = [f"{k:g}" for k in thresholds]
    return [col for b in baselines for col in [f"val_{b}_metric"] + [f"val_{b}_csi{k}" for k in keys]]


def baseline_row(baselines: dict) -> dict:
    """Log columns of the baselines' scores: val_<name>_metric, val_<name>_csi<T>."""
    row = {}
    for name, scores in baselines.items():
        for k, v in scores.items():
            if k == "metric" or k.startswith("csi"):
                row[f"val_{name}_{k}"] = v
    return row


class TrainLog:
    """log.csv + log.jsonl, appended row by row; on resume, rows after the resumed iteration are dropped."""

    def __init__(self, out: Path, thresholds, baselines=(), resume_iteration: int | None = None):
        self.csv_path = Path(out) / LOG_CSV
        self.jsonl_path = Path(out) / LOG_JSONL
        keys = [f"{k:g}" for k in thresholds]
        self.columns = (
            ["iteration", "loss", "lr", "it_per_s", "data_wait_fraction", "truth_probability", "elapsed_s",
             "val_metric"]
            + [f"val_{name}{k}" for name in ("csi", "pod", "far") for k in keys]
            + ["val_gdl", "val_mse", "val_mae", "val_ssim"]
            + baseline_columns(baselines, thresholds)
        )
        if resume_iteration is None:
            atomic_write_text(self.csv_path, ",".join(self.columns) + "\n")
            atomic_write_text(self.jsonl_path, "")
        else:
            self._truncate(resume_iteration)

    def _csv_row(self, row: dict) -> dict:
        return {k: ("" if row.get(k) is None else row.get(k)) for k in self.columns}

    def _truncate(self, iteration: int) -> None:
        rows = []
        if self.jsonl_path.exists():
            for line in self.jsonl_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if int(row.get("iteration", 0)) <= iteration:
                    rows.append(row)
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(self._csv_row(r))
        atomic_write_text(self.csv_path, buf.getvalue())

    def write(self, row: dict) -> None:
        row = json_safe(row)
        with open(self.jsonl_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        with open(self.csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore").writerow(self._csv_row(row))
