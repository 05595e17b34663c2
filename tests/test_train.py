"""Training loop: schedules and loss by hand, end-to-end runs, exact kill-and-resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.errors import NowcastError
from radar_files import SHARED_RADAR, needs_shared_radar
from nowcast.train import (
    BEST_FILE,
    LAST_FILE,
    STATE_FILE,
    TrainConfig,
    balance_thresholds_dbz,
    balanced_weights,
    learning_rate,
    load_train_state,
    masked_loss,
    metric_value,
    parse_metric,
    sampling_mask,
    truth_probability,
)
from nowcast.train import (
    train as train_config,
)

RADAR = SHARED_RADAR / "mch_rainrate_1.nc"


# ---------------------------------------------------------------------------------------------
# pure pieces, by hand


def test_truth_probability_decays_linearly():
    assert truth_probability(0, 100) == 1.0
    assert truth_probability(25, 100) == 0.75
    assert truth_probability(50, 100) == 0.5
    assert truth_probability(100, 100) == 0.0
    assert truth_probability(250, 100) == 0.0
    assert truth_probability(0, 0) == 0.0  # no scheduled sampling: always the model's own frames


def test_sampling_mask_is_keyed_by_iteration():
    a = sampling_mask(1, 10, 4, 9, 0.5)
    assert a.shape == (4, 9) and a.dtype == np.float32
    np.testing.assert_array_equal(a, sampling_mask(1, 10, 4, 9, 0.5))
    assert not np.array_equal(sampling_mask(1, 10, 64, 9, 0.5), sampling_mask(1, 11, 64, 9, 0.5))
    assert sampling_mask(1, 3, 4, 9, 1.0).all()
    assert not sampling_mask(1, 3, 4, 9, 0.0).any()
    big = sampling_mask(0, 0, 400, 25, 0.3)
    assert abs(big.mean() - 0.3) < 0.02


def test_balanced_weights_by_hand():
    # Marshall-Palmer: dBZ = 10 log10(200 R^1.6)
    t = balance_thresholds_dbz()
    np.testing.assert_allclose(t, [27.8268, 34.1938, 39.0103, 46.6442], atol=1e-3)
    dbz = torch.tensor([-10.0, 27.8, 27.9, 34.0, 34.2, 39.0, 39.1, 46.6, 46.7, 70.0])
    w = balanced_weights(dbz)
    assert w.tolist() == [1, 1, 2, 2, 5, 5, 10, 10, 30, 30]
    milder = balanced_weights(dbz, power=0.5)  # each weight's square root
    np.testing.assert_allclose(milder.numpy(), np.sqrt([1, 1, 2, 2, 5, 5, 10, 10, 30, 30]), rtol=1e-6)


def test_masked_loss_by_hand():
    pred = torch.tensor([[0.5, 0.5, 0.9, 0.0]])
    target = torch.tensor([[0.0, 1.0, 0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # errors 0.5, 0.5, 0.4 (the last pixel has no data)
    l1 = (0.5 + 0.5 + 0.4) / 3
    l2 = (0.25 + 0.25 + 0.16) / 3
    assert masked_loss(pred, target, mask, "l1").item() == pytest.approx(l1)
    assert masked_loss(pred, target, mask, "l2").item() == pytest.approx(l2)
    assert masked_loss(pred, target, mask, "l1+l2").item() == pytest.approx(l1 + l2)
    # balanced: targets in dBZ are -10, 70, 30 -> weights 1, 30, 2
    wl = (1 * 0.75 + 30 * 0.75 + 2 * 0.56) / 3
    assert masked_loss(pred, target, mask, "l1+l2", balanced=True).item() == pytest.approx(wl)
    # a NaN-free loss even when nothing is valid
    assert masked_loss(pred, target, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(NowcastError):
        masked_loss(pred, target, mask, "huber")


def test_learning_rate_schedules():
    c = TrainConfig.from_flat(lr=1e-3, iterations=110, warmup=10, lr_schedule="cosine", min_lr=1e-4)
    assert learning_rate(0, c) == pytest.approx(1e-4)
    assert learning_rate(9, c) == pytest.approx(1e-3)
    assert learning_rate(10, c) == pytest.approx(1e-3)
    assert learning_rate(60, c) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert learning_rate(110, c) == pytest.approx(1e-4)
    c = TrainConfig.from_flat(lr=3e-4, iterations=100).optim  # an OptimConfig works too
    assert learning_rate(0, c) == learning_rate(99, c) == 3e-4


def test_parse_metric():
    terms, hi = parse_metric("csi30+csi40")
    assert terms == [("csi", "30"), ("csi", "40")] and hi
    assert parse_metric("gdl") == ([("gdl", None)], False)
    scores = {"csi": {"30": 0.5, "40": 0.3}, "gdl": 0.1}
    assert metric_value(scores, terms) == pytest.approx(0.4)
    # an undefined CSI (no event observed or forecast) is left out of the mean
    assert metric_value({"csi": {"30": float("nan"), "40": 0.3}}, terms) == pytest.approx(0.3)
    assert math.isnan(metric_value({"csi": {"30": float("nan"), "40": float("nan")}}, terms))
    with pytest.raises(NowcastError):
        parse_metric("csi30+gdl")
    with pytest.raises(NowcastError):
        parse_metric("accuracy")


# ---------------------------------------------------------------------------------------------
# end to end (tiny models)


def synthetic_seq(n=30, size=48, seed=3):
    from nowcast.synthetic import generate

    return generate(n_frames=n, height=size, width=size, seed=seed)


class Run:
    """A tiny run: settings plus its data, called as the old flat config was (``train(run)``)."""

    def __init__(self, config, sequences=(), val_sequences=()):
        self.config, self.sequences, self.val_sequences = config, list(sequences), list(val_sequences)

    @property
    def out(self) -> Path:
        return Path(self.config.run.out)

    def set(self, **changes):
        self.config = self.config.override(changes)


def train(run, progress=None):
    if isinstance(run, Run):
        return train_config(run.config, run.sequences, run.val_sequences, progress=progress)
    return train_config(run, progress=progress)


def tiny(tmp_path, name, sequences=(), val_sequences=(), **kw):
    base = dict(
        out=tmp_path / name,
        backbone="predrnn",
        motion=False,
        num_layers=1,
        hidden=8,
        kernel_size=3,
        patch_size=4,
        n_in=3,
        n_out=3,
        crop=16,
        coarsen_factors=(1, 2),
        time_strides=(1, 2),
        iterations=6,
        batch_size=2,
        sampling_iterations=4,
        val_every=3,
        checkpoint_every=2,
        log_every=1,
        seed=5,
        device="cpu",
    )
    base.update(kw)
    return Run(TrainConfig.from_flat(**base), sequences, val_sequences)


def check_loadable(path: Path, size=32, n_in=3, n_out=3):
    from nowcast.checkpoint import load_model
    from nowcast.forecast import ModelForecaster

    model, info = load_model(path, "cpu")
    fc = ModelForecaster(model, info)
    x = np.random.default_rng(0).uniform(-10, 50, size=(1, n_in, size, size)).astype(np.float32)
    y = fc(x, n_out)
    assert y.shape == (1, n_out, size, size)
    assert np.isfinite(y).all()


def test_train_on_synthetic_writes_checkpoints_and_logs(tmp_path):
    seq = synthetic_seq()
    events = []
    cfg = tiny(tmp_path, "run", sequences=[("syn", seq)], motion=True, num_layers=2,
               val_sequences=[("val", synthetic_seq(n=8, size=32, seed=9))], balanced_loss=True,
               lr_schedule="cosine", warmup=2)
    summary = train(cfg, progress=events.append)
    assert summary["status"] == "completed" and summary["iterations"] == 6
    out = Path(summary["paths"]["out"])
    for f in (LAST_FILE, BEST_FILE, STATE_FILE, "log.csv", "log.jsonl"):
        assert (out / f).exists(), f
    assert summary["best"]["iteration"] in (3, 6)
    assert "csi30" in summary["last_validation"]
    kinds = {e.kind for e in events}
    assert {"start", "step", "validation", "checkpoint", "end"} <= kinds
    steps = [e for e in events if e.kind == "step"]
    assert [e.iteration for e in steps] == list(range(1, 7))
    assert all(math.isfinite(e.loss) and e.it_per_s > 0 for e in steps)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 7))
    assert "val_csi30" in rows[2] and "val_metric" in rows[5]
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["iteration", "loss", "lr", "it_per_s"] and "val_csi40" in header
    check_loadable(out / LAST_FILE)
    check_loadable(out / BEST_FILE)
    # a second run into the same folder must not silently overwrite it
    with pytest.raises(NowcastError, match="resume"):
        train(cfg)


@pytest.mark.parametrize("motion", [True, False])
def test_motion_switch_builds_motionrnn_or_the_plain_backbone(tmp_path, motion):
    # --no-motion is the ablation baseline: no MotionGRU and no Motion Highway, as in the paper's table
    from nowcast.checkpoint import read_checkpoint

    cfg = tiny(tmp_path, "run", sequences=[("syn", synthetic_seq())], motion=motion, num_layers=2,
               iterations=1, val_every=1, checkpoint_every=1)
    out = Path(train(cfg)["paths"]["out"])
    tensors, config, _ = read_checkpoint(out / LAST_FILE)
    assert config.motion is motion and config.highway is motion
    assert any("highway" in k for k in tensors) is motion
    assert any("motion" in k for k in tensors) is motion


def test_val_fraction_splits_sequences(tmp_path):
    cfg = tiny(tmp_path, "split", sequences=[("long", synthetic_seq(n=30, size=32)), ("short", synthetic_seq(n=12, size=32))],
               val_fraction=0.2, iterations=3, val_every=3, checkpoint_every=3)
    s = train(cfg)
    assert s["data"]["val"] == ["long[val]"] and s["data"]["unsplit"] == ["short"]
    assert s["last_validation"]["windows"] >= 1
    with pytest.raises(NowcastError, match="long enough"):
        train(tiny(tmp_path, "split2", sequences=[("short", synthetic_seq(n=12, size=32))], val_fraction=0.2))


def test_val_time_range_splits_sequences(tmp_path):
    seq = synthetic_seq(n=40, size=32)
    t = seq.time.values
    rng = f"{np.datetime_as_string(t[20], 'm')}/{np.datetime_as_string(t[36], 'm')}"
    s = train(tiny(tmp_path, "range", sequences=[("seq", seq)], val_time=rng, iterations=2, val_every=2,
                   checkpoint_every=2))
    # frames 20-35 validate; training keeps frames 0-13 (a gap of n_in + n_out = 6); frames 42- are too few
    assert s["data"]["val"] == ["seq[val]"] and s["data"]["train"] == ["seq"]
    assert s["last_validation"]["windows"] == 16 - 6 + 1
    assert load_train_state(tmp_path / "range" / STATE_FILE)["data"]["train"] == [["seq", [14, 32, 32]]]
    with pytest.raises(NowcastError, match="not both"):
        train(tiny(tmp_path, "both", sequences=[("seq", seq)], val_time=rng, val_fraction=0.2))


def test_synthetic_only_run(tmp_path):
    cfg = tiny(tmp_path, "synonly", synthetic_fraction=1.0, synthetic_sequences=2, synthetic_frames=12,
               synthetic_size=32, iterations=2, checkpoint_every=2)
    s = train(cfg)
    assert s["status"] == "completed" and s["data"]["synthetic"] == ["synthetic0", "synthetic1"]
    assert s["paths"]["best"] is None  # nothing to validate on
    check_loadable(Path(s["paths"]["last"]))
    # overwriting a run removes what belonged to the old one
    (cfg.out / BEST_FILE).write_bytes(b"old")
    cfg.set(overwrite=True, iterations=1)
    s = train(cfg)
    assert s["iterations"] == 1 and not (cfg.out / BEST_FILE).exists()
    assert load_train_state(cfg.out / STATE_FILE)["iteration"] == 1


@needs_shared_radar(RADAR)
def test_train_on_real_radar(tmp_path):
    from nowcast.radar import open_radar

    da = open_radar(RADAR)
    # the echo-rich middle of the domain keeps the test light
    da = da.isel(y=slice(200, 328), x=slice(250, 378))
    cfg = tiny(tmp_path, "radar", sequences=[("mch", da)], crop=32, iterations=3, val_every=100,
               checkpoint_every=3, coarsen_factors=(1, 2), time_strides=(1, 2, 3))
    s = train(cfg)
    assert s["status"] == "completed"
    check_loadable(Path(s["paths"]["last"]))


# ---------------------------------------------------------------------------------------------
# interruption and exact resume


def weights(path: Path) -> dict:
    return load_train_state(path / STATE_FILE)["model"]


def assert_same_weights(a: Path, b: Path):
    from safetensors.torch import load_file

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ta, tb = load_file(a / LAST_FILE), load_file(b / LAST_FILE)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


class StopAt:
    def __init__(self, iteration, exc=KeyboardInterrupt):
        self.iteration, self.exc = iteration, exc

    def __call__(self, ev):
        if ev.kind == "step" and ev.iteration == self.iteration:
            raise self.exc()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    seq = synthetic_seq(n=24, size=40)
    val = [("val", synthetic_seq(n=6, size=32, seed=4))]
    s = train(tiny(tmp, "ref", sequences=[("syn", seq)], val_sequences=val, motion=True, num_layers=2, hidden=8))
    return tmp / "ref", seq, val, s


def test_interrupt_then_resume_is_bit_identical(tmp_path, reference_run):
    ref, seq, val, ref_summary = reference_run
    cfg = tiny(tmp_path, "cut", sequences=[("syn", seq)], val_sequences=val, motion=True, num_layers=2, hidden=8)
    s = train(cfg, progress=StopAt(3))
    assert s["status"] == "interrupted" and s["iterations"] == 3
    assert load_train_state(tmp_path / "cut" / STATE_FILE)["iteration"] == 3
    cfg.set(resume=True)
    s2 = train(cfg)
    assert s2["status"] == "completed" and s2["start_iteration"] == 3 and s2["iterations"] == 6
    assert_same_weights(ref, tmp_path / "cut")
    assert s2["best"]["value"] == ref_summary["best"]["value"]
    rows = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 7))


def test_sigint_saves_and_resumes_exactly(tmp_path, reference_run):
    import os
    import signal

    ref, seq, val, _ = reference_run
    cfg = tiny(tmp_path, "sigint", sequences=[("syn", seq)], val_sequences=val, motion=True, num_layers=2, hidden=8)

    def ctrl_c(ev):
        if ev.kind == "step" and ev.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: finish the iteration, save, stop

    before = signal.getsignal(signal.SIGINT)
    s = train(cfg, progress=ctrl_c)
    assert signal.getsignal(signal.SIGINT) is before
    assert s["status"] == "interrupted" and s["iterations"] == 2
    cfg.set(resume=True)
    s = train(cfg)
    assert s["iterations"] == 6 and s["changed_settings"] == []
    assert_same_weights(ref, tmp_path / "sigint")


def test_hard_kill_then_resume_is_bit_identical(tmp_path, reference_run):
    ref, seq, val, _ = reference_run
    cfg = tiny(tmp_path, "kill", sequences=[("syn", seq)], val_sequences=val, motion=True, num_layers=2, hidden=8)
    # an error that is not an interruption saves nothing: like a kill, the run is left at its last
    # periodic checkpoint (iteration 4) with log rows beyond it
    with pytest.raises(RuntimeError):
        train(cfg, progress=StopAt(5, RuntimeError))
    assert load_train_state(tmp_path / "kill" / STATE_FILE)["iteration"] == 4
    # a kill between the state and the weights write: last.safetensors lags behind the state
    (tmp_path / "kill" / LAST_FILE).unlink()
    cfg.set(resume=True)
    s = train(cfg)
    assert s["start_iteration"] == 4 and s["iterations"] == 6
    assert_same_weights(ref, tmp_path / "kill")
    rows = [json.loads(x) for x in (tmp_path / "kill" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 7))


def test_resume_refuses_other_settings(tmp_path, reference_run):
    ref, seq, val, _ = reference_run
    cfg = tiny(tmp_path, "other", sequences=[("syn", seq)], iterations=2, checkpoint_every=2)
    train(cfg)
    cfg.set(resume=True, hidden=12, iterations=4)
    with pytest.raises(NowcastError, match="model settings"):
        train(cfg)
    with pytest.raises(NowcastError, match="no training state"):
        train(tiny(tmp_path, "none", sequences=[("syn", seq)], resume=True))


def test_state_file_loads_with_weights_only(reference_run):
    ref, *_ = reference_run
    state = torch.load(ref / STATE_FILE, weights_only=True)
    assert state["iteration"] == 6 and "optimizer" in state and "sampler" in state


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_gpu(tmp_path, amp):
    cfg = tiny(tmp_path, f"gpu-{amp}", sequences=[("syn", synthetic_seq(n=20, size=32))], device="cuda", precision=amp,
               motion=True, num_layers=2, iterations=3, val_every=3, checkpoint_every=3,
               val_sequences=[("val", synthetic_seq(n=6, size=32, seed=4))])
    s = train(cfg)
    assert s["status"] == "completed" and s["amp"] == ("bfloat16" if amp == "bf16" else "float16")
    check_loadable(Path(s["paths"]["last"]))
    if amp == "fp16":
        assert load_train_state(Path(s["paths"]["state"]))["scaler"]


def test_init_from_starts_with_the_given_weights(tmp_path):
    from nowcast.checkpoint import read_checkpoint

    seqs = [("syn", synthetic_seq())]
    first = train(tiny(tmp_path, "first", iterations=2, sequences=seqs))
    source = first["paths"]["last"]
    # a vanishing lr: Adam steps of ~1e-30 are below float32 resolution, so the run ends on the source weights
    second = train(tiny(tmp_path, "second", iterations=1, lr=1e-30, warmup=0, init_from=str(source), sequences=seqs))
    a, _, _ = read_checkpoint(source)
    b, _, _ = read_checkpoint(second["paths"]["last"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(NowcastError, match="another architecture"):
        train(tiny(tmp_path, "third", iterations=1, hidden=16, init_from=str(source), sequences=seqs))
