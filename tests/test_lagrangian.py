"""The Lagrangian MotionRNN: optical flow carries the motion, the network learns the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast import motion
from nowcast.checkpoint import load_model, save_checkpoint
from nowcast.data import SamplerConfig, WindowSampler
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.lagrangian_windows import MotionCache, cut_window
from nowcast.methods import get_method
from nowcast.nn import LagrangianMotionRNN, ModelConfig, build_model
from nowcast.radar import open_radar

from radar_files import storm

SMALL = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=4)


def lagrangian_config(**kw):
    return ModelConfig(**{**SMALL, "residual": True, "frame": "lagrangian", **kw})


def test_a_lagrangian_model_must_be_residual():
    with pytest.raises(NowcastError, match="residual"):
        ModelConfig(**SMALL, frame="lagrangian")
    with pytest.raises(NowcastError, match="frame"):
        ModelConfig(**SMALL, frame="sideways")
    assert isinstance(build_model(lagrangian_config()), LagrangianMotionRNN)
    assert type(build_model(ModelConfig(**SMALL))).__name__ == "MotionRNN"


@pytest.mark.parametrize("motion_on", [True, False])
def test_untrained_lagrangian_model_is_the_extrapolation_nowcast(motion_on):
    torch.manual_seed(0)
    cfg = lagrangian_config(motion=motion_on, highway=motion_on)
    model = build_model(cfg)
    forecaster = ModelForecaster(model, {"config": cfg, "name": "lagrangian"}, device="cpu")
    inputs = open_radar("sample_data/radar.nc").values[-5:]
    ours = forecaster(inputs, 10)
    reference = get_method("extrapolation")(inputs, 10)
    # the same pixels have no source (up to trajectories ending within 1e-4 pixels of the edge)
    assert (np.isnan(ours) == np.isnan(reference)).mean() > 0.9999
    both = np.isfinite(ours) & np.isfinite(reference)
    assert both.mean() > 0.8
    assert np.abs(ours[both] - reference[both]).max() < 0.01  # dBZ


def test_forward_is_advection_around_the_lagrangian_network():
    torch.manual_seed(1)
    model = build_model(lagrangian_config()).eval()
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)  # a network that changes things
    frames = torch.rand(2, 5, 32, 32)
    v = torch.zeros(2, 2, 32, 32)
    v[:, 0], v[:, 1] = 1.5, -0.5
    with torch.no_grad():
        grid = model(frames, 4, motion=v)
        lagr_in, _ = motion.advect_frames(frames, v, range(4, -1, -1))
        k = model(lagr_in, 4)  # without motion: the Lagrangian frame in, the Lagrangian forecast out
        expect, _ = motion.advect_frames(k, v, range(1, 5))
    assert torch.allclose(grid, expect, atol=1e-6)
    assert not torch.allclose(grid[:, 0], grid[:, 3])


def test_checkpoint_round_trip_keeps_the_frame(tmp_path):
    cfg = lagrangian_config()
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "lag.safetensors", model, cfg, {"default_method": False})
    loaded, info = load_model(path)
    assert info["config"].frame == "lagrangian" and isinstance(loaded, LagrangianMotionRNN)
    frames, v = torch.rand(1, 5, 24, 24), torch.ones(1, 2, 24, 24) * 0.7
    with torch.no_grad():
        assert torch.equal(model.eval()(frames, 3, motion=v), loaded.eval()(frames, 3, motion=v))


def test_a_window_moving_with_the_flow_stands_still_in_lagrangian_coordinates():
    frames = storm(n=15, h=48, w=96, dx=2, seed=3)
    flow = np.zeros((2, 48, 96), dtype=np.float32)
    flow[0] = 2.0

    def velocity_of(y, x, h, w):
        return np.broadcast_to(flow[:, :1, :1], (2, h, w)).copy()

    window = cut_window(frames, velocity_of, n_in=5, y0=8, x0=30, size=32)
    assert window.shape == (15, 32, 32)
    interior = window[:, 4:-4, 4:-4]
    last_input = interior[4]
    assert np.isfinite(interior).all()
    # every frame, past and future, shows the storm where it was at the last input (noise 0.1 dBZ)
    assert np.abs(interior - last_input).max() < 1.0
    plain = frames[:, 8:40, 30:62]
    assert np.abs(plain[-1] - plain[4]).max() > 20.0  # in the grid's frame it has moved on


def test_lagrangian_sampler_and_disk_cache(tmp_path):
    seq = open_radar("sample_data/radar.nc")
    cfg = SamplerConfig(crop=32, frame="lagrangian", coarsen_factors=(1, 2), time_strides=(1,))
    first = WindowSampler([("sample", seq)], cfg, seed=5, motion_cache=MotionCache(tmp_path / "flow"))
    batch = first.sample_batch(3)
    assert batch["inputs"].shape == (3, 5, 32, 32) and batch["targets"].shape == (3, 10, 32, 32)
    assert first.motion_cache.computed >= 1 and any((tmp_path / "flow").glob("*.npy"))
    again = WindowSampler([("renamed", seq)], cfg, seed=5, motion_cache=MotionCache(tmp_path / "flow"))
    batch2 = again.sample_batch(3)
    assert again.motion_cache.computed == 0  # found by content on disk, whatever the sequence is called
    for key in batch:
        assert np.array_equal(batch[key], batch2[key])
