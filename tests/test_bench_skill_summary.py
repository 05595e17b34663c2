"""The leave-one-service-out summary (benchmarks/bench_skill.py): seed scores and the ablation line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_skill = pytest.importorskip("bench_skill")


def row(method, service, csi30, csi40, bias=1.0):
    return {"service": service, "method": method, "csi30": csi30, "csi30_lead_mean": csi30, "csi40": csi40,
            "csi40_lead_mean": csi40, "bias30": bias, "bias40": bias, "gdl": 0.0, "invented_heavy": 0.0}


def test_seed_scores_average_services_and_skip_incomplete_runs():
    rows = [row("capped-motionrnn-s0", s, 0.4, 0.2) for s in ("mch", "fmi", "bom")]
    rows += [row("capped-predrnn-s0", s, 0.3, c) for s, c in (("mch", 0.1), ("fmi", 0.1), ("bom", 0.4))]
    rows += [row("capped-predrnn-s1", "mch", 0.9, 0.9), row("extrapolation", "mch", 0.2, 0.1)]
    scores = bench_skill.seed_scores(rows)
    assert scores[("capped", "motionrnn")] == {"s0": pytest.approx(0.3)}
    assert scores[("capped", "predrnn")] == {"s0": pytest.approx((0.2 + 0.2 + 0.35) / 3)}  # s1: one service only


def test_summary_applies_the_rule_and_prints_the_ablation(tmp_path, capsys):
    rows = [row("extrapolation", s, 0.3, 0.1) for s in ("mch", "fmi", "bom")]
    for seed in (0, 1):
        rows += [row(f"capped-motionrnn-s{seed}", s, 0.35, 0.12) for s in ("mch", "fmi", "bom")]
        rows += [row(f"capped-predrnn-s{seed}", s, 0.32, 0.11, bias=1.6) for s in ("mch", "fmi", "bom")]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": rows}))
    assert bench_skill.summarize([path]) == 0
    out = capsys.readouterr().out
    assert "capped-motionrnn     services 3  admissible yes  mean CSI 0.2350" in out
    assert "capped-predrnn       services 3  admissible no " in out  # bias 1.6 > 1.5
    assert "per seed: s0 +0.0200 s1 +0.0200; mean +0.0200 +- 0.0000" in out
