"""What training gives the user beyond the loop: baselines beside the validation scores, the data's time step
in the checkpoint, and bf16 on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.checkpoint import read_checkpoint
from nowcast.synthetic import generate
from nowcast.train import TrainConfig, load_train_state, train


def seq(n=20, size=32, seed=3, step=5.0):
    return generate(n_frames=n, height=size, width=size, seed=seed, step_minutes=step)


def tiny(out, **kw):
    base = dict(out=out, motion=False, num_layers=1, hidden=4, kernel_size=3, patch_size=4, n_in=3, n_out=3,
                crop=16, coarsen_factors=(1,), time_strides=(1,), iterations=2, batch_size=2, val_every=2,
                checkpoint_every=2, log_every=1, seed=1, device="cpu")
    base.update(kw)
    return TrainConfig.from_flat(**base)


def test_validation_rows_carry_the_baselines_scored_once(tmp_path, monkeypatch):
    import nowcast.train.trainer as trainer

    calls = []
    real = trainer.score_baselines
    monkeypatch.setattr(trainer, "score_baselines", lambda *a: calls.append(1) or real(*a))
    cfg = tiny(tmp_path / "val", iterations=4, val_every=2, val_baselines=("persistence",))
    s = train(cfg, [("syn", seq())], [("val", seq(n=8, seed=9))])
    assert len(calls) == 1  # two validations, one baseline scoring
    rows = [json.loads(x) for x in (tmp_path / "val" / "log.jsonl").read_text().splitlines()]
    val_rows = [r for r in rows if "val_metric" in r]
    assert [r["iteration"] for r in val_rows] == [2, 4]
    persistence = s["baselines"]["persistence"]
    for r in val_rows:
        assert r["val_persistence_csi30"] == persistence["csi30"]
        assert r["val_persistence_metric"] == persistence["metric"]
    assert "val_persistence_csi30" in (tmp_path / "val" / "log.csv").read_text().splitlines()[0]
    # the summary says whether the model is ahead of each baseline
    assert set(s["ahead_of"]) == {"persistence"}
    best, base = s["best"]["value"], persistence["metric"]
    assert s["ahead_of"]["persistence"] == (None if best is None or base is None else best > base)


def test_persistence_baseline_scores_by_hand(tmp_path):
    # validation frames: a block of 40 dBZ that does not move, then vanishes: persistence hits every pixel
    # while the block stays and misses them after
    frames = np.full((6, 32, 32), -10.0, dtype=np.float32)
    frames[:4, 8:24, 8:24] = 40.0
    val = generate(n_frames=6, height=32, width=32, seed=0).copy(data=frames)
    cfg = tiny(tmp_path / "hand", iterations=1, val_every=1, val_baselines=("persistence",), val_thresholds=(30,),
               best_metric="csi30")
    s = train(cfg, [("syn", seq())], [("val", val)])
    # one window: inputs 0-2, targets 3-5; forecast = frame 2 (block) for 3 leads; observed block at lead 1 only
    # hits 256, false alarms 2 x 256 -> CSI = 1/3
    assert s["baselines"]["persistence"]["csi30"] == pytest.approx(1 / 3)


def test_checkpoint_meta_records_the_time_step(tmp_path):
    s = train(tiny(tmp_path / "ten"), [("a", seq(step=10.0)), ("b", seq(seed=4, step=10.0))])
    _, _, meta = read_checkpoint(s["paths"]["last"], tensors=False)
    assert meta["step_minutes"] == 10.0 and s["step_minutes"] == 10.0
    assert meta["settings"]["model"]["hidden"] == 4
    s = train(tiny(tmp_path / "mixed"), [("a", seq(step=10.0)), ("b", seq(seed=4, step=5.0))])
    assert read_checkpoint(s["paths"]["last"], tensors=False)[2]["step_minutes"] is None


def test_bf16_on_cpu_trains_and_resumes_exactly(tmp_path):
    data = [("syn", seq(n=24, size=40))]
    kw = dict(precision="bf16", motion=True, num_layers=2, hidden=8, iterations=4, checkpoint_every=2)
    ref = train(tiny(tmp_path / "ref", **kw), data)
    assert ref["precision"] == "bf16" and ref["status"] == "completed"
    state = load_train_state(tmp_path / "ref" / "train_state.pt")
    assert state["scaler"] == {}  # no gradient scaling for bf16
    assert all(v.dtype == torch.float32 for v in state["model"].values())  # float32 master weights

    def stop_at_2(ev):
        if ev.kind == "step" and ev.iteration == 2:
            raise KeyboardInterrupt

    assert train(tiny(tmp_path / "cut", **kw), data, progress=stop_at_2)["status"] == "interrupted"
    train(tiny(tmp_path / "cut", resume=True, **kw), data)
    a = load_train_state(tmp_path / "ref" / "train_state.pt")["model"]
    b = load_train_state(tmp_path / "cut" / "train_state.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # auto stays fp32 on a CPU
    assert train(tiny(tmp_path / "auto", iterations=1), data)["precision"] == "fp32"
    assert not Path(tmp_path / "auto" / "best.safetensors").exists()
