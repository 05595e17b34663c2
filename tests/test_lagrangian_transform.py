"""One Lagrangian transform: training windows and the model's inference give the same frames, and the coarse
float16 flow of the training cache changes the windows by a measured, bounded amount."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast import synthetic
from nowcast.errors import NowcastError
from nowcast.lagrangian_transform import LagrangianTransform
from nowcast.lagrangian_windows import MotionCache, cut_window
from nowcast.motion import displacements, estimate_motion
from nowcast.nn import build_model
from nowcast.nn.lagrangian import lagrangian_class
from nowcast.units import apply_floor, dbz_to_unit, unit_to_dbz

from test_lagrangian import lagrangian_config

N_IN, N_OUT = 5, 10
Y0, X0, SIZE = 24, 32, 48  # the crop, inside a 96 x 112 grid
# Training cuts a region around the crop, inference advects the whole grid: the same trajectories in pixel
# coordinates with another origin, so float32 rounds them differently (about 1e-5 pixel at coordinates near
# 100). Times echo gradients of up to ~20 dBZ per pixel over up to 10 steps: 2e-3 dBZ. (Measured: 4e-4.)
SAME_FRAMES_DBZ = 2e-3


@pytest.fixture(scope="module")
def storm_and_flow():
    """A synthetic storm that only moves (no growth or decay), floored as the sampler's sequences are,
    and its full-resolution Lucas-Kanade flow from the window's inputs (what the training cache coarsens)."""
    da = synthetic.generate(n_frames=N_IN + N_OUT, height=96, width=112, seed=4, motion="mixed", speed=2.0,
                            evolve=False)
    frames = apply_floor(da.values).astype(np.float32)
    return frames, np.array(estimate_motion(frames[:N_IN]))


def region_of(flow: np.ndarray):
    """velocity_of for cut_window from a full-resolution flow: beyond the grid, the nearest edge's flow
    (what motion.displacements reads there)."""

    def velocity_of(y, x, h, w):
        ys = np.clip(np.arange(y, y + h), 0, flow.shape[1] - 1)
        xs = np.clip(np.arange(x, x + w), 0, flow.shape[2] - 1)
        return flow[:, ys][:, :, xs].copy()

    return velocity_of


def on_crop(a) -> np.ndarray:
    return np.asarray(a)[..., Y0 : Y0 + SIZE, X0 : X0 + SIZE]


class Recorder(torch.nn.Module):
    """A network with MotionRNN's call contract that keeps what it was given and forecasts persistence."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.seen = {}

    def forward(self, frames, n_out=None, truth=None, sampling_mask=None, return_motion=False):
        self.seen = {"frames": frames, "truth": truth}
        return frames[:, -1:].expand(-1, n_out, -1, -1)


def assert_same_where_both_have_a_source(training: np.ndarray, inference_dbz: np.ndarray, source: np.ndarray):
    both = np.isfinite(training)
    assert (source[both]).all()  # training's sources (region and data) lie within inference's (the grid)
    assert both.mean() > 0.95
    diff = np.abs(training[both] - inference_dbz[both])
    assert diff.max() < SAME_FRAMES_DBZ


def test_training_window_past_frames_are_what_the_network_reads_at_inference(storm_and_flow):
    frames, flow = storm_and_flow
    window = cut_window(frames, region_of(flow), N_IN, Y0, X0, SIZE)
    model = build_model(lagrangian_config()).eval()
    seen = []

    def network(lagrangian):
        seen.append(lagrangian)
        return lagrangian[:, -1:].expand(-1, N_OUT, -1, -1)

    x, v = torch.from_numpy(dbz_to_unit(frames[:N_IN]))[None], torch.from_numpy(flow)[None]
    with torch.no_grad():
        model.around_network(x, v, N_OUT, network)
        _, source = LagrangianTransform(v, N_IN, N_OUT).past(x)
    inference = on_crop(unit_to_dbz(seen[0][0].numpy()))
    assert_same_where_both_have_a_source(window[:N_IN], inference, on_crop(source[0].numpy()))
    # not trivially so: the storm moved, and the Lagrangian frame followed much of that motion
    echo = window[N_IN - 1] > 20
    assert echo.mean() > 0.1
    eulerian = np.abs(on_crop(frames[0]) - on_crop(frames[N_IN - 1]))[echo].mean()  # measured: 19 dBZ
    assert eulerian > 10.0
    assert np.nanmean(np.abs(window[0] - window[N_IN - 1])[echo]) < 0.5 * eulerian  # measured: 6.6 dBZ


def test_training_window_future_frames_are_the_truth_the_model_advects(storm_and_flow):
    frames, flow = storm_and_flow
    window = cut_window(frames, region_of(flow), N_IN, Y0, X0, SIZE)
    model = lagrangian_class(Recorder)(lagrangian_config())
    x, truth = (torch.from_numpy(dbz_to_unit(a))[None] for a in (frames[:N_IN], frames[N_IN:]))
    v = torch.from_numpy(flow)[None]
    with torch.no_grad():
        model(x, N_OUT, truth=truth, sampling_mask=torch.ones(1, N_OUT - 1), motion=v)
        _, source = LagrangianTransform(v, N_IN, N_OUT).future(truth)
    inference = on_crop(unit_to_dbz(model.seen["truth"][0].numpy()))
    assert_same_where_both_have_a_source(window[N_IN:], inference, on_crop(source[0].numpy()))
    # the network read the past frames in the same frame as well
    past = on_crop(unit_to_dbz(model.seen["frames"][0].numpy()))
    assert_same_where_both_have_a_source(window[:N_IN], past, np.isfinite(window[:N_IN]))


def test_the_coarse_float16_flow_changes_windows_far_less_than_the_flow_errs(storm_and_flow):
    """The bound behind keeping the cache's coarse flow (nowcast.lagrangian_windows' docstring).

    The storm only moves, so a perfect flow would make every frame of its Lagrangian window equal the last
    input: how far the frames are from it is the error of the flow itself (Lucas-Kanade, one field for the
    window). The coarse float16 flow must add a small fraction of that, and stay below 1 dBZ (about a radar's
    calibration accuracy) on 99% of the echo pixels."""
    frames, flow = storm_and_flow
    cache = MotionCache()
    coarse = cache.coarse(frames, 0, 1, N_IN)
    assert coarse.dtype == np.float16 and coarse.shape == (2, 96 // 4, 112 // 4)
    full = cut_window(frames, region_of(flow), N_IN, Y0, X0, SIZE)
    cached = cut_window(frames, lambda y, x, h, w: cache.region(coarse, y, x, h, w), N_IN, Y0, X0, SIZE)
    echo = np.isfinite(full) & np.isfinite(cached) & ((full > 15) | (cached > 15))
    assert echo.mean() > 0.3
    diff = np.abs(cached - full)[echo]
    leads = np.arange(N_IN + N_OUT) != N_IN - 1

    def flow_error(window):
        return np.abs(window - window[N_IN - 1])[leads][echo[leads]].mean()

    assert diff.mean() < 0.05 * flow_error(full)  # measured: 0.5% (0.04 of 8.5 dBZ)
    assert np.percentile(diff, 99) < 1.0  # measured: 0.32 dBZ
    assert flow_error(cached) < 1.01 * flow_error(full)  # the Lagrangian frame is no worse for it


def test_a_uniform_integer_flow_shifts_frames_by_hand():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.random((1, 3, 20, 24)).astype(np.float32))
    v = torch.zeros(1, 2, 20, 24)
    v[:, 0] = 2.0  # two columns to the right per step
    t = LagrangianTransform(v, n_in=3, n_out=2)
    past, ok = t.past(frames)
    assert torch.equal(past[:, 2], frames[:, 2]) and ok[:, 2].all()  # the last input is itself
    for j, k in ((0, 2), (1, 1)):  # frame j moves on by k steps: out[x] = frame[x - 2k]
        assert torch.allclose(past[0, j, :, 2 * k :], frames[0, j, :, : 24 - 2 * k], atol=1e-5)
        assert not ok[0, j, :, : 2 * k].any() and ok[0, j, :, 2 * k :].all()
    future, ok = t.future(frames[:, :2])  # frame t+k moves back k steps: out[x] = frame[x + 2k]
    for k in (1, 2):
        assert torch.allclose(future[0, k - 1, :, : 24 - 2 * k], frames[0, k - 1, :, 2 * k :], atol=1e-5)
        assert not ok[0, k - 1, :, 24 - 2 * k :].any()
    grid, ok = t.to_grid(frames[:, :2])  # forecast t+k moves on k steps
    assert torch.allclose(grid[0, 1, :, 4:], frames[0, 1, :, :20], atol=1e-5)
    with pytest.raises(ValueError):
        t.past(frames[:, :2])
    with pytest.raises(ValueError):
        t.to_grid(frames)  # three forecast frames for n_out = 2


def test_trajectories_are_continued_exactly_and_the_data_mask_travels_with_the_values():
    torch.manual_seed(0)
    v = torch.nn.functional.avg_pool2d(torch.randn(1, 2, 32, 32) * 6, 9, 1, 4)
    t = LagrangianTransform(v, n_in=4, n_out=7)
    short = t.displacements(1, 3).clone()
    longer = t.displacements(1, 7)  # continued from D_3
    assert torch.equal(longer, displacements(v, 7)) and torch.equal(longer[:, :3], short)
    assert torch.equal(t.displacements(-1, 7), displacements(-v, 7))
    frames = torch.rand(1, 4, 32, 32)
    valid = torch.ones(1, 4, 32, 32, dtype=torch.bool)
    valid[0, 0, 10:14, 10:14] = False
    plain, plain_ok = t.past(frames)
    masked, masked_ok = t.past(frames, valid)
    assert torch.equal(masked, plain)  # the mask changes where there is a source, not the values
    # a pixel has a source only if the pixels it interpolates had data (bilinear weight on the hole < 0.001)
    disp = t.displacements(1, 3)[0, 2]  # frame 0 moves on by 3 steps
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    sx, sy = xs + disp[0], ys + disp[1]
    # the weight bilinear interpolation at s gives to rows/columns 10..13: rises from 9 to 10, falls from 13 to 14
    hole = (torch.minimum(sx - 9, 14 - sx).clamp(0, 1) * torch.minimum(sy - 9, 14 - sy).clamp(0, 1))
    assert (hole >= 1e-3).sum() >= 4 and (hole[10:14, 10:14] == 0).any()  # the hole is found, and has moved
    assert torch.equal(masked_ok[0, 0], plain_ok[0, 0] & (hole < 1e-3))
    assert torch.equal(masked_ok[0, 1:], plain_ok[0, 1:])


def test_nearest_sampling_keeps_a_narrow_core_that_bilinear_halves():
    """A one-pixel 50 dBZ core in 20 dBZ moved 0.4 pixel: bilinear spreads it over two pixels at 38 and 32 dBZ
    (none reaches 40 any more); nearest leaves it whole."""
    frames = torch.full((1, 2, 9, 9), 20.0)
    frames[0, 0, 4, 4] = 50.0
    v = torch.zeros(1, 2, 9, 9)
    v[:, 0] = 0.4  # 0.4 column to the right per step
    bilinear, _ = LagrangianTransform(v, n_in=2, n_out=1).past(frames)
    nearest, _ = LagrangianTransform(v, n_in=2, n_out=1, mode="nearest").past(frames)
    assert torch.allclose(bilinear[0, 0, 4, 4:6], torch.tensor([38.0, 32.0]))
    assert (bilinear[0, 0] >= 40).sum() == 0
    assert (nearest[0, 0] == 50.0).sum() == 1 and (nearest[0, 0] == 20.0).sum() == 80
    # an integer shift is the same either way
    v[:, 0] = 2.0
    a, _ = LagrangianTransform(v, 2, 3).to_grid(frames)
    b, _ = LagrangianTransform(v, 2, 3, mode="nearest").to_grid(frames)
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="advection mode"):
        LagrangianTransform(v, 2, 3, mode="cubic")


def test_a_nearest_training_window_holds_only_values_of_its_frames(storm_and_flow):
    frames, flow = storm_and_flow
    window = cut_window(frames, region_of(flow), N_IN, Y0, X0, SIZE, mode="nearest")
    seen = np.unique(frames)
    for k in (0, N_IN + 4, N_IN + N_OUT - 1):  # the first past frame, a middle lead, the last lead
        values = window[k][np.isfinite(window[k])]
        assert values.size > 0.5 * SIZE * SIZE
        assert np.isin(values, seen).all()
    bilinear = cut_window(frames, region_of(flow), N_IN, Y0, X0, SIZE)
    assert not np.isin(bilinear[0][np.isfinite(bilinear[0])], seen).all()


def test_a_nearest_model_trains_and_forecasts_with_the_mode_of_its_config():
    cfg = lagrangian_config(advection="nearest")
    model = build_model(cfg).eval()
    frames = torch.rand(1, N_IN, 24, 24)
    v = torch.full((1, 2, 24, 24), 0.5)
    with torch.no_grad():
        out = model(frames, 3, motion=v)  # untrained: the last frame carried along the flow, values unchanged
    have = torch.isfinite(out) & (out > 0)
    assert have.sum() > 100
    assert torch.isin(out[have], frames[0, -1]).all()
    with pytest.raises(NowcastError, match="advection"):
        lagrangian_config(advection="cubic")


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_a_window_integrates_only_its_crop_and_equals_the_whole_grid_cropped(mode):
    torch.manual_seed(2)
    v = torch.nn.functional.avg_pool2d(torch.randn(1, 2, 40, 48) * 8, 9, 1, 4)
    frames, valid = torch.rand(1, 7, 40, 48), torch.rand(1, 7, 40, 48) > 0.05
    whole = LagrangianTransform(v, n_in=4, n_out=3, mode=mode)
    crop = LagrangianTransform(v, n_in=4, n_out=3, mode=mode, window=(6, 10, 20, 24))
    assert crop.displacements(1, 3).shape == (1, 3, 2, 20, 24)
    for got, want in ((crop.past(frames[:, :4], valid[:, :4]), whole.past(frames[:, :4], valid[:, :4])),
                      (crop.future(frames[:, 4:], valid[:, 4:]), whole.future(frames[:, 4:], valid[:, 4:]))):
        assert torch.allclose(got[0], want[0][..., 6:26, 10:34], atol=1e-5)
        assert torch.equal(got[1], want[1][..., 6:26, 10:34])
    with pytest.raises(ValueError, match="whole grid"):
        crop.to_grid(frames[:, :3])
