"""Motion fields and the torch semi-Lagrangian advection, against pysteps and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pysteps.extrapolation.semilagrangian import extrapolate as pysteps_extrapolate

from nowcast import motion
from nowcast.radar import open_radar
from nowcast.verify import contingency

from radar_files import SHARED_RADAR, needs_shared_radar, storm


def _uniform(vx, vy, h=24, w=32):
    v = np.zeros((1, 2, h, w), dtype=np.float32)
    v[:, 0], v[:, 1] = vx, vy
    return torch.from_numpy(v)


def test_integer_shift_moves_a_pattern_exactly():
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.random((1, 24, 32)).astype(np.float32))
    out, valid = motion.extrapolate(frame, _uniform(2.0, -1.0), 3)
    for k in (1, 2, 3):
        # content moves 2k to the right and k up: out[y, x] = frame[y + k, x - 2k]
        expect = frame[0, k:, : 32 - 2 * k]
        got = out[0, k - 1, : 24 - k, 2 * k :]
        assert torch.allclose(got, expect, atol=1e-5)
        assert valid[0, k - 1, : 24 - k, 2 * k :].all()
        assert not valid[0, k - 1, :, : 2 * k].any()  # the inflow columns have no source
        assert not valid[0, k - 1, 24 - k :, :].any()


def test_displacement_follows_a_rotation_like_pysteps():
    h = w = 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    v = np.stack([-(yy - 20) * 0.1, (xx - 20) * 0.1])  # solid-body rotation
    _, ref = pysteps_extrapolate(np.zeros((h, w)), v, 6, return_displacement=True)
    ours = motion.displacements(torch.from_numpy(v[None].astype(np.float32)), 6)[0, -1].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_lead_zero_is_the_identity_and_leads_must_match():
    frames = torch.rand(2, 3, 10, 12)
    out, valid = motion.advect_frames(frames, torch.zeros(2, 2, 10, 12), [0, 0, 0])
    assert torch.equal(out, frames) and valid.all()
    with pytest.raises(ValueError):
        motion.advect_frames(frames, torch.zeros(2, 2, 10, 12), [1, 2])


def test_advection_is_differentiable_with_respect_to_the_field():
    field = torch.rand(1, 2, 16, 16, requires_grad=True)
    out, _ = motion.advect_frames(field, _uniform(0.5, 0.25, 16, 16), [1, 2])
    out.sum().backward()
    assert field.grad is not None and float(field.grad.abs().sum()) > 0


def test_motion_of_an_eastward_storm_points_east():
    v = motion.estimate_motion(storm(n=5, h=64, w=64, dx=2))
    assert v.shape == (2, 64, 64) and v.dtype == np.float32
    core = (slice(24, 40), slice(14, 30))
    assert 1.0 < float(np.median(v[0][core])) < 3.0
    assert abs(float(np.median(v[1][core]))) < 0.5


@needs_shared_radar(SHARED_RADAR / "mch_rainrate_1.nc")
def test_advection_matches_pysteps_on_real_radar():
    seq = open_radar(str(SHARED_RADAR / "mch_rainrate_1.nc"))
    window = seq.values[12:17]
    v = motion.estimate_motion(window)
    last = np.nan_to_num(window[-1], nan=-10.0).astype(np.float64)
    ref = pysteps_extrapolate(last, v.astype(np.float64), 10, outval=np.nan)
    out, valid = motion.extrapolate(torch.from_numpy(last[None].astype(np.float32)), torch.from_numpy(v[None]), 10)
    out, valid = out[0].numpy(), valid[0].numpy()
    assert (valid == np.isfinite(ref)).mean() > 0.9999
    both = valid & np.isfinite(ref)
    assert np.abs(out[both] - ref[both]).mean() < 0.01  # dBZ; the issue asks for well under 1
    observed = seq.values[17:27]

    def csi(fc, obs):
        c = contingency(fc, obs, 30.0)
        return c.hits / (c.hits + c.misses + c.false_alarms)

    ours, theirs = np.where(both, out, np.nan), np.where(both, ref, np.nan)
    for lead in range(10):
        # each advected field scored against the radar: the same skill, to 0.01
        assert abs(csi(ours[lead], observed[lead]) - csi(theirs[lead], observed[lead])) < 0.01
