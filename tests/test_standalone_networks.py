"""The stand-alone baselines TrajGRU and Conv-TT-LSTM: the reference architectures, MotionRNN's call contract,
training, checkpoints, the Lagrangian frame and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.checkpoint import load_model, save_checkpoint
from nowcast.cli import main
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.methods import get_method
from nowcast.nn import ModelConfig, backbones, build_model, count_parameters, lagrangian_class
from nowcast.nn.convttlstm import ConvTTLSTM
from nowcast.nn.trajgru import TrajGRU, warp_links
from nowcast.radar import open_radar
from nowcast.train import TrainConfig

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
NETWORKS = ["trajgru", "convttlstm"]
CLASSES = {"trajgru": TrajGRU, "convttlstm": ConvTTLSTM}


def tiny(name: str, **kw) -> ModelConfig:
    settings = dict(backbone=name, motion=False, highway=False, num_layers=2, hidden=8, kernel_size=3,
                    patch_size=1, input_frames=3, output_frames=3)
    return ModelConfig(**{**settings, **kw})


def blob_sequence(n: int = 6, size: int = 12) -> torch.Tensor:
    """A Gaussian echo moving down and right: (1, n, size, size) on the [0, 1] scale."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    frames = [torch.exp(-((yy - 3.0 - t) ** 2 + (xx - 2.0 - 1.5 * t) ** 2) / 6.0) for t in range(n)]
    return torch.stack(frames).unsqueeze(0)


# ------------------------------------------------------------------------------ the reference networks


def test_the_registry_builds_them():
    assert {"trajgru", "convttlstm"} <= set(backbones.STANDALONE)
    for name, cls in CLASSES.items():
        assert type(build_model(tiny(name))) is cls


def test_trajgru_parameter_count_equals_the_reference():
    # Reference: github:Hzzone/Precipitation-Nowcasting @ 1e38d21aec77522dcbce9c1ecdd2dab766112788, its
    # TrajGRU, Encoder, Forecaster and make_layers built as experiments/net_params.py builds them (stem
    # conv 1->8 k7 s5, TrajGRUs 64/192/192 with i2h k3, convs k5 s3 and k3 s2, deconvs k4 s2 and k5 s3,
    # head deconv 64->8 k7 s5, conv 3x3, conv 1x1), with the links per level of the HKO-7 configuration
    # (github:sxjscience/HKO-7 @ 57b987bd893bd6910996494c247359ace371d333,
    # trajgru_55_55_33_1_64_1_192_1_192_13_13_9_b4.yml: L = 13, 13, 9 for encoder and forecaster alike;
    # net_params.py lists the forecaster's in reverse while keeping its h2h kernels per level, a slip).
    # It holds 12,360,693 parameters, of which 1,149,536 are never used: the input-to-state and
    # input-to-flow convolutions of the top forecaster RNN, which reads no input (no gradient reaches them).
    # Used: 11,211,157. (net_params.py exactly as published: 12,753,909, used 11,604,373.)
    cfg = ModelConfig(backbone="trajgru", motion=False, highway=False, num_layers=3, hidden=[64, 192, 192],
                      kernel_size=3, patch_size=1, input_frames=5, output_frames=20)
    assert count_parameters(build_model(cfg)) == 11_211_157


def test_convttlstm_parameter_count_equals_the_reference():
    # Reference: github:NVlabs/conv-tt-lstm @ 1220ff4a1248ee48f3c36535f19955dcb35a9d75, code/convlstmnet.py
    # ConvLSTMNet(input_channels=1, layers_per_block=(3, 3, 3, 3), hidden_channels=(32, 48, 48, 32),
    # skip_stride=2, cell="convttlstm", cell_params={"order": 3, "steps": 3, "rank": 8}, kernel_size=5,
    # bias=True), the paper's network (eval_paper/test.py builds the same): 2,687,281 parameters, all used.
    cfg = ModelConfig(backbone="convttlstm", motion=False, highway=False, num_layers=4, hidden=[32, 48, 48, 32],
                      kernel_size=5, patch_size=1, input_frames=10, output_frames=10)
    assert count_parameters(build_model(cfg)) == 2_687_281
    # the same reference with 3 blocks of (4, 6, 6) channels and 3x3 kernels: 43,763
    small = ModelConfig(backbone="convttlstm", motion=False, highway=False, num_layers=3, hidden=[4, 6, 6],
                        kernel_size=3, patch_size=1)
    assert count_parameters(build_model(small)) == 43_763


def test_warp_follows_the_flow():
    h = torch.zeros(1, 2, 5, 6)
    h[0, :, 2, 3] = torch.tensor([1.0, -2.0])
    flows = torch.zeros(1, 4, 5, 6)  # link 0 stays, link 1 samples one pixel left and one up
    flows[0, 2], flows[0, 3] = 1.0, 1.0
    out = warp_links(h, flows)
    assert out.shape == (1, 4, 5, 6)
    assert torch.equal(out[:, :2], h)
    assert torch.allclose(out[0, 2:, 3, 4], h[0, :, 2, 3]) and out[0, 2:, 2, 3].abs().max() == 0


# ------------------------------------------------------------------------------ the call contract


@pytest.mark.parametrize("name", NETWORKS)
def test_odd_grid_sizes_and_an_untrained_residual_network_is_persistence(name):
    torch.manual_seed(0)
    model = build_model(tiny(name, patch_size=2, residual=True)).eval()
    frames = torch.rand(2, 3, 23, 37)
    with torch.no_grad():
        out = model(frames, 4)
    assert out.shape == (2, 4, 23, 37)
    assert torch.equal(out, frames[:, -1:].expand(-1, 4, -1, -1))
    with torch.no_grad():
        assert model(frames[:1, :, :1, :1]).shape == (1, 3, 1, 1)  # one pixel still works
        assert model(frames.unsqueeze(2), 2).shape == (2, 2, 1, 23, 37)  # (B, T, C, H, W) keeps C


@pytest.mark.parametrize("name", NETWORKS)
def test_deterministic_channels_last_and_no_motion(name):
    torch.manual_seed(1)
    model = build_model(tiny(name)).eval()
    frames = torch.rand(1, 3, 20, 18)
    with torch.no_grad():
        a, b = model(frames, 2), model(frames, 2)
        model.use_channels_last(True)
        c = model(frames, 2)
        model.use_channels_last(False)
    assert torch.equal(a, b) and torch.allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="no MotionGRU"):
        model(frames, 2, return_motion=True)
    with pytest.raises(ValueError, match="truth"):
        model(frames, 3, truth=torch.rand(1, 2, 20, 17), sampling_mask=torch.ones(1, 2))


def test_convttlstm_scheduled_sampling_reads_the_truth():
    # Untrained and residual, each output is the frame read at that step: its own forecast (the last
    # frame, persistence) or, where the mask says so, the true frame.
    torch.manual_seed(2)
    model = build_model(tiny("convttlstm", residual=True)).eval()
    frames, truth = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    with torch.no_grad():
        free = model(frames, 3)
        forced = model(frames, 3, truth=truth, sampling_mask=mask)
        unforced = model(frames, 3, truth=truth, sampling_mask=torch.zeros(2, 2))
    assert torch.equal(free, frames[:, -1:].expand(-1, 3, -1, -1)) and torch.equal(free, unforced)
    assert torch.equal(forced[:, 0], free[:, 0])
    assert torch.equal(forced[0, 1:], truth[0, :2])
    assert torch.equal(forced[1, 1], free[1, 1]) and torch.equal(forced[1, 2], truth[1, 1])


def test_trajgru_forecaster_reads_no_frames():
    # The encoder-forecaster never reads a forecast frame: scheduled sampling changes nothing.
    torch.manual_seed(3)
    model = build_model(tiny("trajgru")).eval()
    frames, truth = torch.rand(1, 3, 30, 30), torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        assert torch.equal(model(frames, 3), model(frames, 3, truth=truth, sampling_mask=torch.ones(1, 2)))


# ------------------------------------------------------------------------------ training and checkpoints


@pytest.mark.parametrize("name", NETWORKS)
def test_a_tiny_model_overfits_a_tiny_sequence(name):
    torch.manual_seed(0)
    model = build_model(tiny(name, patch_size=2))
    seq = blob_sequence()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((model(seq[:, :3], 3) - seq[:, 3:]) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0], losses[::10]


@pytest.mark.parametrize("name", NETWORKS)
def test_gradients_reach_every_parameter(name):
    # Residual networks start with a zero read-out (and TrajGRU with zero flows), so the gradient reaches
    # the layers below only after the first steps: after three, every parameter must have one.
    torch.manual_seed(0)
    model = build_model(tiny(name, residual=True))
    seq = blob_sequence(size=16)  # TrajGRU's top level is then 2x2: a 1x1 level has no room to warp
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        opt.zero_grad()
        out = model(seq[:, :3], 3, truth=seq[:, 3:], sampling_mask=torch.tensor([[1.0, 0.0]]))
        ((out - seq[:, 3:]) ** 2).mean().backward()
        opt.step()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("frame", ["eulerian", "lagrangian"])
def test_checkpoint_round_trip_is_bit_identical(name, frame, tmp_path):
    torch.manual_seed(4)
    cfg = tiny(name, hidden=[4, 6], residual=True, frame=frame)
    model = build_model(cfg)
    for p in model.parameters():  # away from the zero initialisations
        torch.nn.init.normal_(p, std=0.1)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, cfg)
    loaded, info = load_model(path)
    assert info["config"] == cfg and type(loaded) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    frames = torch.rand(1, 3, 26, 19)
    extra = {"motion": torch.full((1, 2, 26, 19), 0.7)} if frame == "lagrangian" else {}
    with torch.no_grad():
        assert torch.equal(model.eval()(frames, 2, **extra), loaded.eval()(frames, 2, **extra))


@pytest.mark.parametrize("name", NETWORKS)
def test_untrained_lagrangian_network_is_the_extrapolation_nowcast(name):
    torch.manual_seed(0)
    cfg = tiny(name, residual=True, frame="lagrangian", input_frames=5, output_frames=4)
    model = build_model(cfg)
    assert type(model) is lagrangian_class(CLASSES[name])
    forecaster = ModelForecaster(model, {"config": cfg, "name": name}, device="cpu")
    inputs = open_radar(SAMPLE).values[-5:]
    ours = forecaster(inputs, 4)
    reference = get_method("extrapolation")(inputs, 4)
    assert (np.isnan(ours) == np.isnan(reference)).mean() > 0.9999
    both = np.isfinite(ours) & np.isfinite(reference)
    assert both.mean() > 0.8 and np.abs(ours[both] - reference[both]).max() < 0.01  # dBZ


def test_config_refuses_what_they_do_not_have():
    with pytest.raises(NowcastError, match="backbone trajgru has no MotionRNN form"):
        ModelConfig(backbone="trajgru", num_layers=2)
    with pytest.raises(NowcastError, match="convttlstm has no layer norm"):
        tiny("convttlstm", layer_norm=True)
    assert tiny("trajgru", hidden=[4, 8]).hidden_list == [4, 8]


# ------------------------------------------------------------------------------ the command line

TINY = ["--layers", "2", "--hidden", "4", "--kernel", "3", "--patch", "1", "--crop", "32", "--batch-size", "2",
        "--coarsen", "1", "--time-strides", "1", "--input-frames", "3", "--lead-frames", "3", "--device", "cpu",
        "--baselines", "none", "--seed", "2"]


def test_training_settings_turn_motion_off_for_standalone_backbones():
    for name in NETWORKS:
        model = TrainConfig().override({"model.backbone": name}).model
        assert model.backbone == name and not model.motion and not model.highway
    assert TrainConfig().override({"model.num_layers": 2}).model.motion  # MotionRNN's default stays


@pytest.mark.parametrize("name", NETWORKS)
def test_train_refuses_motion_for_a_standalone_backbone(name, tmp_path, capsys):
    out = tmp_path / "runs" / "refused"
    assert main(["train", str(SAMPLE), "--out", str(out), "--backbone", name, "--motion", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"backbone {name} has no MotionRNN form" in err
    assert not (tmp_path / "runs").exists()


def test_train_then_predict_then_no_trend(tmp_path, capsys):
    out = tmp_path / "runs" / "trajgru"
    assert main(["train", str(SAMPLE), "--out", str(out), "--backbone", "trajgru", "--iterations", "2",
                 "--val", str(SAMPLE), "--val-every", "2", "--val-stride", "8", *TINY]) == 0
    best = out / "best.safetensors"
    model, info = load_model(best)
    assert isinstance(model, TrajGRU) and not info["config"].motion
    fc = tmp_path / "fc.nc"
    assert main(["predict", str(SAMPLE), "--model", str(best), "-o", str(fc)]) == 0
    forecast = open_radar(fc)
    # the default recipe is Lagrangian: the inflow border, which the flow brings from beyond the grid, is NaN
    assert forecast.shape == (10, 128, 128) and np.isfinite(forecast.values).mean() > 0.8
    capsys.readouterr()
    png = tmp_path / "trend.png"
    assert main(["visualize-trend", str(SAMPLE), "-o", str(png), "--model", str(best), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no MotionGRU" in err
    assert not png.exists()
