"""Training batches drawn by keyed slots (nowcast.train.loader): the same samples with or without DataLoader
workers, each process's share a part of the one global batch, resume on the same stream, the team's loss
normalised by the global count of valid pixels, and the --loader-workers option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.cli import main
from nowcast.data import SamplerConfig, WindowSampler
from nowcast.distributed import Team
from nowcast.errors import NowcastError
from nowcast.radar import open_radar
from nowcast.synthetic import generate
from nowcast.train import TrainConfig, load_train_state, train
from nowcast.train.config import resumed
from nowcast.train.loader import KeyedBatches, StreamBatches, batch_source, resolve_workers
from nowcast.train.objectives import masked_loss

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"


def sampler(seed=5, sequences=None, **kw):
    config = SamplerConfig(n_in=3, n_out=3, crop=16, coarsen_factors=(1, 2), time_strides=(1, 2), **kw)
    seqs = sequences or [("a", generate(n_frames=24, height=48, width=48, seed=1)),
                         ("b", generate(n_frames=20, height=40, width=40, seed=2))]
    return WindowSampler(seqs, config, seed=seed)


def drawn(batches: KeyedBatches | StreamBatches, n: int) -> list[dict]:
    try:
        return [batches.next() for _ in range(n)]
    finally:
        batches.close()


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() == {"inputs", "targets", "mask"}
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_a_keyed_sample_depends_on_seed_iteration_and_slot_only():
    s, t = sampler(), sampler()
    first = s.sample_at(7, 3)
    t.sample()  # another sampler's own stream has moved on: no effect on keyed draws
    for k in first:
        assert np.array_equal(first[k], t.sample_at(7, 3)[k])
    assert not np.array_equal(first["inputs"], s.sample_at(8, 3)["inputs"])
    assert not np.array_equal(first["inputs"], s.sample_at(7, 4)["inputs"])
    assert not np.array_equal(first["inputs"], sampler(seed=6).sample_at(7, 3)["inputs"])
    # keyed draws leave the stream where it was
    u = sampler()
    u.sample_at(0, 0)
    assert np.array_equal(u.sample()["inputs"], sampler().sample()["inputs"])


def test_two_workers_give_the_batches_of_none():
    s = sampler()
    share = Team().share(4)
    in_process = drawn(KeyedBatches(s, share, workers=0, start=3, stop=9), 6)
    in_workers = drawn(KeyedBatches(s, share, workers=2, start=3, stop=9), 6)
    assert_same_batches(in_process, in_workers)
    # batch j is iteration 3 + j's: the same as drawing that iteration by hand
    for j, batch in enumerate(in_process):
        assert np.array_equal(batch["inputs"].numpy(), s.batch_at(3 + j, range(4))["inputs"])


def test_workers_read_a_lazily_opened_file():
    seq = open_radar([SAMPLE], lazy=True)
    s = WindowSampler([("sample", seq)], SamplerConfig(n_in=3, n_out=3, crop=32), seed=2)
    share = Team().share(2)
    assert_same_batches(drawn(KeyedBatches(s, share, 0, 0, 3), 3), drawn(KeyedBatches(s, share, 2, 0, 3), 3))


@pytest.mark.parametrize("world", [2, 4])
def test_the_ranks_shares_make_up_the_global_batch(world):
    s, batch_size = sampler(), 8
    whole = s.batch_at(4, range(batch_size))
    shares = [drawn(KeyedBatches(s, Team(r, r, world).share(batch_size), 0, 4, 5), 1)[0] for r in range(world)]
    assert all(len(p["inputs"]) == batch_size // world for p in shares)
    for k in whole:
        assert np.array_equal(torch.cat([p[k] for p in shares]).numpy(), whole[k]), k


def test_a_run_saved_before_keyed_draws_continues_its_own_stream():
    s = sampler()
    s.sample_batch(4)
    saved = s.state_dict()
    expected = s.sample_batch(4)
    source = batch_source(sampler(), saved, 4, Team(1, 1, 2).share(4), workers=2, start=1, stop=3)
    assert isinstance(source, StreamBatches)
    got = drawn(source, 1)[0]
    for k in expected:
        assert np.array_equal(got[k].numpy(), expected[k][2:]), k  # rank 1's half of the stream's next batch
    assert source.state_dict()["count"] == 8


def test_auto_workers_are_none_on_a_cpu():
    assert resolve_workers(None, torch.device("cpu")) == 0
    assert resolve_workers(3, torch.device("cpu")) == 3
    assert 0 <= resolve_workers(None, torch.device("cuda"), processes_per_node=1) <= 4


def test_the_loss_of_a_share_divides_by_the_global_count():
    # two processes with 1 and 3 valid pixels; errors (l1) 0.5 at each valid pixel of process 0, 0.1 of process 1
    pred = torch.tensor([[[[0.5, 0.0]]], [[[0.1, 0.1]]], [[[0.1, 0.0]]]])
    target = torch.zeros_like(pred)
    mask = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]], [[[1.0, 0.0]]]])
    first = masked_loss(pred[:1], target[:1], mask[:1], "l1", denominator=4.0)
    second = masked_loss(pred[1:], target[1:], mask[1:], "l1", denominator=4.0)
    assert float(first) == pytest.approx(0.5 / 4) and float(second) == pytest.approx(0.3 / 4)
    whole = masked_loss(pred, target, mask, "l1")
    assert float(first + second) == pytest.approx(float(whole)) == pytest.approx(0.8 / 4)
    # each share's own mean would weigh process 0's one pixel as much as process 1's three: 0.5/1 + 0.3/3 != 2 x 0.2
    own = masked_loss(pred[:1], target[:1], mask[:1], "l1") + masked_loss(pred[1:], target[1:], mask[1:], "l1")
    assert float(own) / 2 != pytest.approx(float(whole))


# ------------------------------------------------------------------------------- the trainer


def tiny(out, **kw):
    base = dict(out=out, motion=False, num_layers=1, hidden=4, kernel_size=3, patch_size=4, n_in=3, n_out=3,
                crop=16, coarsen_factors=(1,), time_strides=(1, 2), iterations=4, batch_size=4, val_every=100,
                checkpoint_every=1, log_every=1, seed=1, device="cpu")
    base.update(kw)
    return TrainConfig.from_flat(**base)


class StopAt:
    def __init__(self, iteration):
        self.iteration = iteration

    def __call__(self, ev):
        if ev.kind == "step" and ev.iteration == self.iteration:
            raise KeyboardInterrupt


def logged(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_workers_and_resume_continue_the_same_stream(tmp_path):
    seqs = [("syn", generate(n_frames=20, height=32, width=32, seed=3))]
    whole = train(tiny(tmp_path / "whole", loader_workers=0), seqs)
    assert whole["status"] == "completed"
    # stopped at 2 in the training process, resumed with 2 workers: the same losses and weights
    cut = tmp_path / "cut"
    assert train(tiny(cut, loader_workers=0), seqs, progress=StopAt(2))["status"] == "interrupted"
    assert load_train_state(cut / "train_state.pt")["sampler"] == {"scheme": "keyed", "seed": 1}
    again = train(resumed(tiny(cut).to_dict(), {"run.loader_workers": 2}), seqs)
    assert again["status"] == "completed" and again["start_iteration"] == 2
    assert [r["loss"] for r in logged(cut)] == [r["loss"] for r in logged(tmp_path / "whole")]
    a, b = (load_train_state(p / "train_state.pt")["model"] for p in (tmp_path / "whole", cut))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every log row says how much of its time went into waiting for samples
    assert all(0.0 <= r["data_wait_fraction"] <= 1.0 for r in logged(cut))


def test_loader_workers_setting_round_trip_and_refusals():
    c = TrainConfig.from_flat(loader_workers=2)
    assert c.run.loader_workers == 2 and TrainConfig.from_dict(c.to_dict()) == c
    assert TrainConfig().run.loader_workers is None  # auto
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(NowcastError, match="loader_workers must be a whole number"):
            TrainConfig.from_flat(loader_workers=bad)
    # how the samples are drawn may change on resume
    assert resumed(c.to_dict(), {"run.loader_workers": 0}).run.loader_workers == 0


@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_bad_loader_workers_value_is_one_line(tmp_path, capsys, value):
    code = main(["train", str(SAMPLE), "--out", str(tmp_path / "bad"), "--loader-workers", value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "loader" in err and "workers" in err
    assert not (tmp_path / "bad").exists()


def team_losses(shares, **kw) -> list[torch.Tensor]:
    """Each share's loss in a team simulated in one process: a first pass records what every share would
    sum over the team, the second gives each share the totals, as all_reduce would."""
    recorded = []
    for share in shares:
        seen = []
        masked_loss(*share, pool=lambda t, seen=seen: seen.append(t.detach()) or t.detach(), **kw)
        recorded.append(seen)
    totals = [sum(parts) for parts in zip(*recorded)]
    losses = []
    for share in shares:
        given = iter(totals)
        losses.append(masked_loss(*share, pool=lambda t, given=given: next(given), **kw))
    return losses


def test_the_team_loss_and_gradient_are_the_whole_batchs():
    torch.manual_seed(0)
    pred = torch.rand(4, 3, 8, 8, requires_grad=True)  # on the [0, 1] scale: 30-50 dBZ events on both sides
    target, mask = torch.rand(4, 3, 8, 8), (torch.rand(4, 3, 8, 8) > 0.3).float()
    recipe = dict(kind="l1+l2", balanced=True, balance_power=0.5, balance_on="both", soft_csi=0.5, gdl=0.3)
    whole = masked_loss(pred, target, mask, **recipe)
    (expected,) = torch.autograd.grad(whole, pred)
    cut = [slice(0, 1), slice(1, 4)]  # unequal valid counts
    losses = team_losses([(pred[c], target[c], mask[c]) for c in cut], **recipe)
    assert float(sum(losses).detach()) == pytest.approx(float(whole.detach()), rel=1e-6)
    (got,) = torch.autograd.grad(sum(losses), pred)
    assert torch.allclose(got, expected, atol=1e-7, rtol=1e-5)
    # each share's own soft CSI and GDL (what a team computed before) give another gradient
    own = [masked_loss(pred[c], target[c], mask[c], denominator=float(mask.sum()), **recipe) for c in cut]
    (apart,) = torch.autograd.grad(sum(own), pred)
    assert not torch.allclose(apart, expected, atol=1e-7, rtol=1e-5)
