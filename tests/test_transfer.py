"""Skill that transfers: bounded growth in the network, climate augmentation, the invented-heavy-echo figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.data import SamplerConfig, WindowSampler, shift_intensity
from nowcast.errors import NowcastError
from nowcast.invented import InventedEchoAccumulator, disc, pixel_km_of, source_support
from nowcast.nn import ModelConfig, build_model
from nowcast.units import DBZ_CEIL, DBZ_FLOOR

SPAN = DBZ_CEIL - DBZ_FLOOR


def _wild(cap=None, radius=1, motion=True, frame="lagrangian"):
    """A tiny residual network whose output layer adds large random changes (so it 'grows' echo)."""
    cfg = ModelConfig(num_layers=2, hidden=8, kernel_size=3, patch_size=2, residual=True, frame=frame,
                      motion=motion, highway=motion, growth_cap_dbz=cap, growth_cap_radius=radius)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
        model.conv_out.weight.normal_(0.0, 2.0)
    return model.eval()


@pytest.mark.parametrize("motion", [True, False])
def test_growth_cap_holds_every_lead_under_the_local_maximum_plus_margin(motion):
    x = torch.zeros(2, 5, 16, 16)
    x[0, -1, 5, 5] = 0.5  # one cell in the last frame; window 1 is dry
    x[:, :-1, 12, 12] = 0.9  # heavy echo in earlier frames only: not a source
    uncapped = _wild(None, motion=motion)(x, 10)
    capped = _wild(2.0, radius=1, motion=motion)(x, 10)
    assert torch.any(uncapped > 0.5 + 2.0 / SPAN)  # the wild network does grow echo beyond the bound
    cap = torch.zeros(2, 16, 16)
    cap[0, 4:7, 4:7] = 0.5  # the 3x3 local maximum of the last frame
    bound = (cap + 2.0 / SPAN)[:, None]
    assert torch.all(capped <= bound + 1e-6)
    # where the network stays under the bound, the cap changes nothing at the first lead
    below = uncapped[:, 0] < bound[:, 0] - 1e-3
    assert torch.allclose(capped[:, 0][below], uncapped[:, 0][below], atol=1e-6)


def test_growth_cap_is_off_by_default_and_round_trips():
    cfg = ModelConfig(growth_cap_dbz=3, growth_cap_radius=4, frame="lagrangian", residual=True)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again.growth_cap_dbz == 3.0 and again.growth_cap_radius == 4
    assert ModelConfig().growth_cap_dbz is None
    for bad in ({"growth_cap_dbz": -1}, {"growth_cap_dbz": "x"}, {"growth_cap_radius": -2},
                {"growth_cap_radius": 1.5}):
        with pytest.raises(NowcastError, match="growth_cap"):
            ModelConfig(**bad)


def test_growth_cap_keeps_gradients_for_pixels_under_it():
    model = _wild(3.0).train()
    x = torch.rand(1, 5, 16, 16) * 0.5
    model(x, 3).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_shift_intensity_moves_echo_keeps_floor_and_no_data():
    frames = np.array([[[DBZ_FLOOR, 20.0], [np.nan, -8.0]]], dtype=np.float32)
    up = shift_intensity(frames, 4.0)
    down = shift_intensity(frames, -5.0)
    np.testing.assert_array_equal(up, np.array([[[DBZ_FLOOR, 24.0], [np.nan, -4.0]]], np.float32))
    np.testing.assert_array_equal(down, np.array([[[DBZ_FLOOR, 15.0], [np.nan, DBZ_FLOOR]]], np.float32))
    assert up.dtype == np.float32


def test_sampler_intensity_offsets_stay_within_their_range():
    rng = np.random.default_rng(0)
    frames = rng.uniform(20.0, 30.0, (20, 32, 32)).astype(np.float32)
    sampler = WindowSampler([frames], SamplerConfig(n_in=2, n_out=2, crop=32, flips=False, intensity_offset_db=3.0),
                            seed=1)
    offsets = []
    for _ in range(30):
        b = sampler.sample(return_info=True)
        t0 = b["info"]["start"]
        d = (b["inputs"] - (frames[t0 : t0 + 2] - DBZ_FLOOR) / SPAN) * SPAN
        assert np.ptp(d) < 1e-3  # one offset for the whole sample
        offsets.append(float(d.mean()))
    assert max(np.abs(offsets)) <= 3.0 + 1e-3 and np.std(offsets) > 0.5
    with pytest.raises(NowcastError, match="intensity_offset_db"):
        SamplerConfig(intensity_offset_db=-1).validate()


def test_source_support_is_a_disc_of_the_radius_in_km():
    ref = np.full((1, 21, 21), 10.0)
    ref[0, 10, 10] = 36.0
    sup = source_support(ref, pixel_km=2.0, radius_km=6.0)  # 3 pixels
    assert sup[0].sum() == disc(3.0).sum() == 29
    assert sup[0, 10, 13] and sup[0, 12, 12]  # 3 and 2.83 pixels from the centre
    assert not sup[0, 13, 13] and not sup[0, 10, 14]
    assert not source_support(np.where(ref > 35, 34.9, ref), 2.0, radius_km=6.0).any()


def test_invented_counts_by_hand():
    fc = np.full((1, 2, 4, 4), 10.0)
    obs = np.full((1, 2, 4, 4), 10.0)
    sup = np.zeros((1, 2, 4, 4), bool)
    fc[0, 0, 0, :3] = 45.0  # three heavy pixels at lead 1, one of them supported
    sup[0, 0, 0, 0] = True
    fc[0, 1, 3, 3] = 50.0  # lead 2: one heavy pixel outside the radar's coverage (no observation)
    obs[0, 1, 3, 3] = np.nan
    acc = InventedEchoAccumulator(2).update(fc, obs, sup)
    res = acc.merge(InventedEchoAccumulator(2).update(fc, obs, sup)).result()
    assert res.heavy_per_lead == (6, 0) and res.invented_per_lead == (4, 0)
    assert res.per_lead[0] == pytest.approx(2 / 3) and np.isnan(res.per_lead[1])
    assert res.pooled == pytest.approx(2 / 3)


def test_pixel_size_from_the_x_coordinate():
    import xarray as xr

    da = xr.DataArray(np.zeros((1, 2, 3)), dims=("time", "y", "x"), coords={"x": [0.0, 500.0, 1000.0]})
    assert pixel_km_of(da) == 1.0  # no units: pixel indices, taken as 1 km
    assert pixel_km_of(da.assign_coords(x=da.x.assign_attrs(units="m"))) == pytest.approx(0.5)
    assert pixel_km_of(da.assign_coords(x=[0.0, 2.0, 4.0]).assign_coords(x=lambda d: d.x.assign_attrs(units="km"))) == 2.0
    assert pixel_km_of(np.zeros((1, 2, 3))) == 1.0


def test_evaluate_reports_invented_heavy_echo_for_every_method(tmp_path):
    """A method that paints a 50 dBZ cell far from any echo invents all of its heavy pixels; extrapolation of a
    lone moving cell invents none."""
    from nowcast.evaluate import evaluate
    from nowcast.methods import resolve

    class Painter:
        name, input_frames = "painter", 5

        def __call__(self, inputs, n_out):
            out = np.full(inputs.shape[:1] + (n_out,) + inputs.shape[-2:], DBZ_FLOOR, np.float32)
            out[..., 2:6, 2:6] = 50.0  # 16 pixels per lead, 30 pixels from the cell
            return out

    frames = np.full((16, 48, 48), DBZ_FLOOR, np.float32)
    for t in range(16):
        frames[t, 30:36, 20 + t : 26 + t] = 45.0  # a cell moving one pixel per step
    import xarray as xr

    times = np.datetime64("2026-01-01T00:00") + np.arange(16) * np.timedelta64(5, "m")
    seq = xr.DataArray(frames, dims=("time", "y", "x"),
                       coords={"time": times, "x": np.arange(48) * 1000.0, "y": np.arange(48) * -1000.0})
    result = evaluate([("cell", seq)], [Painter(), resolve("extrapolation")], n_in=5, n_out=10)
    painter, extrap = result.method("painter").invented, result.method("extrapolation").invented
    assert result.windows == 2 and painter.heavy_per_lead == (32,) * 10 and painter.pooled == 1.0
    assert sum(extrap.heavy_per_lead) > 0 and extrap.pooled == 0.0
    assert result.to_dict()["results"]["painter"]["invented_heavy_per_lead"] == [1.0] * 10
