"""The MIM and E3D-LSTM backbones inside the MotionRNN framework: structure, parameter counts against OpenSTL,
training, gradients, checkpoints, the Lagrangian frame, and the train / predict / visualize-trend commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nowcast.checkpoint import load_model, save_checkpoint
from nowcast.cli import main
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.methods import get_method
from nowcast.nn import ModelConfig, STLSTMBlock, backbones, build_model, count_parameters
from nowcast.nn.e3d import WINDOW, E3DBlock, recall
from nowcast.nn.mim import MIMBlock
from nowcast.radar import open_radar

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "radar.nc"
NEW = ["mim", "e3d"]
TINY = dict(num_layers=3, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=4)
CASES = [(bb, motion) for bb in NEW for motion in (False, True)]


def tiny(backbone, motion, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**TINY, "backbone": backbone, "motion": motion, "highway": motion, **kw}))


# -- registry and structure -----------------------------------------------------------------------------


def test_registered_and_stacked_as_the_papers_describe():
    assert {"predrnn", "convlstm", "mim", "e3d"} <= set(backbones.names())
    mim = tiny("mim", False)
    assert type(mim.blocks[0]) is STLSTMBlock  # MIM's first layer is an ST-LSTM
    assert all(type(b) is MIMBlock for b in mim.blocks[1:])
    e3d = tiny("e3d", True)
    assert all(type(b) is E3DBlock for b in e3d.blocks)
    assert not e3d.blocks[0].clip_input and all(b.clip_input for b in e3d.blocks[1:])
    # between blocks an E3D clip is folded into channels: the MotionGRU and output layer read hidden * WINDOW
    assert e3d.motion_grus[0].enc.in_channels == 8 * WINDOW
    assert e3d.conv_out.in_channels == 8 * WINDOW and e3d.highway_in.out_channels == 8 * WINDOW


def test_one_hidden_size_for_backbones_with_a_zigzag_memory():
    with pytest.raises((ValueError, NowcastError)):
        build_model(ModelConfig(**{**TINY, "backbone": "mim", "motion": False, "highway": False,
                                   "hidden": [8, 8, 16]}))


# -- parameter counts of the paper's radar setting ---------------------------------------------------------
# 64 x 64 frames, patch 4, 4 layers x 64 hidden, 5 x 5 kernels, 5 -> 10 frames, motion and highway off.
# References: OpenSTL commit c74deb5d4c3da585291f9f18281f3fefdbba3a54, counted as
# sum(p.numel() for p in model.parameters()) of MIM_Model(4, [64] * 4, cfg) and E3DLSTM_Model(4, [64] * 4, cfg)
# with cfg.in_shape = (5, 1, 64, 64), patch_size 4, filter_size 5, stride 1, layer_norm 0 (the model and module
# files loaded on their own with torch; the same way PredRNN_Model gives 6,049,792, our PredRNN count).
OPENSTL_MIM = 9_748_480
OPENSTL_E3D = 13_148_160


def _split(model):
    """(convolution weights, other parameters) of a model."""
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    return conv, count_parameters(model) - conv


def test_mim_parameter_count_matches_openstl():
    model = build_model(ModelConfig(backbone="mim", motion=False, highway=False))
    conv, other = _split(model)
    # OpenSTL's peephole weights are (C, 16, 16) maps on the patch grid (ct: 2C, oc: C, in MIM-S and MIM-N of
    # each of the 3 MIM blocks); here one per channel. Its MIM-N also holds a 1x1 conv_last (2C -> C) it
    # never uses, left out here. Every convolution kernel is the same.
    spatial = 3 * 2 * 3 * 64 * 16 * 16
    unused = 3 * 2 * 64 * 64
    assert conv == OPENSTL_MIM - spatial - unused == 9_428_992
    assert other == 3 * 2 * 3 * 64 == 1_152
    assert count_parameters(model) == 9_430_144


def test_e3d_parameter_count_matches_openstl():
    model = build_model(ModelConfig(backbone="e3d", motion=False, highway=False))
    conv, other = _split(model)
    # OpenSTL's layer norm on the cell has a scale and shift per (C, window 2, 16, 16) element; here per channel
    # (GroupNorm with one group). Every convolution kernel is the same, its (2, 1, 1) output Conv3d included.
    layer_norm = 4 * 2 * 64 * 2 * 16 * 16
    assert conv == OPENSTL_E3D - layer_norm == 12_886_016
    assert other == 4 * 2 * 64 == 512
    assert count_parameters(model) == 12_886_528


# -- behaviour of the blocks ---------------------------------------------------------------------------------


def test_mim_non_stationary_module_reads_the_change_of_its_input():
    torch.manual_seed(0)
    block = MIMBlock(8, 8, kernel_size=3)
    zeros = lambda c: torch.zeros(1, c, 6, 6)  # noqa: E731
    x = torch.rand(1, 8, 6, 6)
    state, m = block.init_state(zeros), torch.rand(1, 8, 6, 6)
    with torch.no_grad():
        for _ in range(3):  # the same input every step: no change, MIM-N stays at rest
            _, state, m = block(x, state, m)
        assert torch.equal(state[3], torch.zeros_like(x)) and torch.equal(state[4], torch.zeros_like(x))
        _, state, m = block(x + 0.5, state, m)
    assert state[3].abs().max() > 0 and state[4].abs().max() > 0


def test_recall_is_attention_over_the_remembered_cells_at_each_pixel():
    q = torch.zeros(1, 4, 2, 3, 3)
    same = torch.full((1, 4, 5, 3, 3), 0.7)
    assert torch.allclose(recall(q, same), torch.full((1, 4, 2, 3, 3), 0.7))
    memories = torch.zeros(1, 4, 3, 3, 3)
    memories[:, 0, 1] = 100.0  # slot 1 is the one the query asks for: it gets (almost) all the weight
    q[:, 0] = 1.0
    assert torch.allclose(recall(q, memories)[:, 0], torch.full((1, 2, 3, 3), 100.0))


def test_e3d_first_layer_keeps_a_clip_of_its_last_inputs():
    torch.manual_seed(0)
    block = E3DBlock(4, 8, kernel_size=3)
    zeros = lambda c: torch.zeros(1, c, 6, 6)  # noqa: E731
    state, m = block.init_state(zeros), block.init_memory(zeros)
    frames = torch.rand(3, 1, 4, 6, 6)
    with torch.no_grad():
        for x in frames:
            out, state, m = block(x, state, m)
    assert out.shape == (1, 8 * WINDOW, 6, 6) and m.shape == (1, 8 * WINDOW, 6, 6)
    # the clip of the next step will be the last WINDOW - 1 inputs and the new one
    assert torch.equal(state[3], torch.stack(list(frames[-(WINDOW - 1):]), 2))
    assert state[2].shape == (1, 8, WINDOW * WINDOW, 6, 6)  # the cells of the last WINDOW steps


# -- the network in the framework ---------------------------------------------------------------------------


@pytest.mark.parametrize("backbone, motion", CASES)
def test_odd_sizes_deterministic_and_checkpoint_round_trip(backbone, motion, tmp_path):
    model = tiny(backbone, motion).eval()
    cfg = ModelConfig(**{**TINY, "backbone": backbone, "motion": motion, "highway": motion})
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        out, mot = model(x, 4, return_motion=True)
        again = model(x, 4)
    assert out.shape == (2, 4, 19, 23) and torch.isfinite(out).all()
    assert torch.equal(out, again)
    assert mot["trend"].shape == (2, 6, 2 if motion else 0, 18, 5, 6)  # ceil(19 / 4), ceil(23 / 4)
    path = save_checkpoint(tmp_path / f"{backbone}.safetensors", model, cfg, {})
    loaded, info = load_model(path)
    assert info["config"].backbone == backbone
    with torch.no_grad():
        assert torch.equal(loaded(x, 4), out)


@pytest.mark.parametrize("backbone, motion", CASES)
def test_gradients_reach_every_parameter(backbone, motion):
    model = tiny(backbone, motion, layer_norm=True)
    with torch.no_grad():  # leave the MotionGRU's zero start, where its gate gradients vanish by construction
        for gru in model.motion_grus:
            for p in (gru.conv_ur.weight, gru.conv_z.weight, gru.conv_mask.weight):
                p.normal_(0, 0.1)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    out = model(x, 4, truth=y, sampling_mask=torch.tensor([[1, 0, 1], [0, 1, 0]]))
    F.mse_loss(out, y).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


@pytest.mark.parametrize("backbone, motion", CASES)
def test_tiny_model_overfits_one_sequence(backbone, motion):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=backbone, motion=motion, highway=motion, num_layers=2, hidden=16,
                                    kernel_size=3, patch_size=2, input_frames=3, output_frames=3))
    frames = torch.zeros(1, 6, 12, 12)
    for t in range(6):  # a blob moving one pixel right per frame
        frames[0, t, 4:8, 1 + t: 5 + t] = 0.8
    x, y = frames[:, :3], frames[:, 3:]
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(200):
        opt.zero_grad()
        out = model(x, 3)
        loss = F.mse_loss(out, y) + F.l1_loss(out, y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        if loss.item() < first / 10:
            break
    assert loss.item() < first / 10, (first, loss.item())


@pytest.fixture(scope="module")
def extrapolation():
    inputs = open_radar(SAMPLE).values[-5:]
    return inputs, get_method("extrapolation")(inputs, 10)


@pytest.mark.parametrize("backbone, motion", CASES)
def test_untrained_lagrangian_model_is_the_extrapolation_nowcast(backbone, motion, extrapolation):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, motion=motion, highway=motion, num_layers=2, hidden=8, kernel_size=3,
                      patch_size=4, residual=True, frame="lagrangian")
    forecaster = ModelForecaster(build_model(cfg), {"config": cfg, "name": "lagrangian"}, device="cpu")
    inputs, reference = extrapolation
    ours = forecaster(inputs, 10)
    assert (np.isnan(ours) == np.isnan(reference)).mean() > 0.9999
    both = np.isfinite(ours) & np.isfinite(reference)
    assert both.mean() > 0.8
    assert np.abs(ours[both] - reference[both]).max() < 0.01  # dBZ


# -- the commands ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mim"
    code = main(["train", str(SAMPLE), "--out", str(out), "--preset", "paper", "--backbone", "mim", "--motion",
                 "--iterations", "2",
                 "--layers", "2", "--hidden", "8", "--kernel", "3", "--patch", "4", "--crop", "16",
                 "--batch-size", "2", "--coarsen", "1", "--time-strides", "1", "--input-frames", "3",
                 "--lead-frames", "3", "--val", str(SAMPLE), "--val-every", "2", "--val-stride", "4",
                 "--baselines", "none", "--device", "cpu", "--seed", "2"])
    assert code == 0
    return out


def test_train_mim_with_motion_then_predict(mim_run, tmp_path):
    model, info = load_model(mim_run / "best.safetensors")
    assert info["config"].backbone == "mim" and info["config"].motion and len(model.motion_grus) == 1
    fc = tmp_path / "fc.nc"
    assert main(["predict", str(SAMPLE), "--model", str(mim_run / "best.safetensors"), "-o", str(fc)]) == 0
    import xarray as xr

    with xr.open_dataset(fc) as ds:
        assert ds["reflectivity"].sizes["time"] == 10 and np.isfinite(ds["reflectivity"].values).any()


def test_visualize_trend_of_a_mim_model(mim_run, tmp_path):
    png, nc = tmp_path / "trend.png", tmp_path / "trend.nc"
    assert main(["visualize-trend", str(SAMPLE), "-o", str(png), "--model", str(mim_run / "best.safetensors"),
                 "--vectors", str(nc), "--device", "cpu"]) == 0
    import xarray as xr

    with xr.open_dataset(nc) as ds:
        assert ds.sizes == {"y": 16, "x": 16} and np.isfinite(ds["dx"].values).all()
    assert png.stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("backbone", backbones.names())
def test_every_backbone_trains_from_the_command_line_then_predicts(backbone, tmp_path):
    """The must-show of the backbone issue for each one: train 2 iterations, then forecast with best.safetensors
    (MotionRNN form where the backbone has one, in the Lagrangian frame, as the shipped model)."""
    import xarray as xr

    out = tmp_path / backbone
    motion = ["--no-motion"] if backbones.is_standalone(backbone) else ["--motion"]
    assert main(["train", str(SAMPLE), "--out", str(out), "--backbone", backbone, *motion, "--frame", "lagrangian",
                 "--iterations", "2", "--layers", "2", "--hidden", "8", "--kernel", "3", "--patch", "4",
                 "--crop", "32", "--batch-size", "2", "--coarsen", "1", "--time-strides", "1",
                 "--val", str(SAMPLE), "--val-every", "2", "--val-stride", "8", "--baselines", "none",
                 "--device", "cpu", "--seed", "2"]) == 0
    fc = tmp_path / "fc.nc"
    assert main(["predict", str(SAMPLE), "--model", str(out / "best.safetensors"), "-o", str(fc)]) == 0
    with xr.open_dataset(fc) as ds:
        assert ds["reflectivity"].sizes["time"] == 10 and np.isfinite(ds["reflectivity"].values).any()
    assert load_model(out / "best.safetensors").config.backbone == backbone
