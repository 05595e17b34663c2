"""Training windows: determinism, resumable state, augmentation, NaN-aware coarsening, time gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from nowcast.data import (
    SamplerConfig,
    WindowSampler,
    as_seqdata,
    coarsen_dbz,
    dihedral,
    parse_time_range,
    split_by_time_range,
    split_in_time,
    time_segments,
)
from nowcast.errors import NowcastError


def make_seq(n=30, h=48, w=40, seed=0, times=None, nan_frac=0.0):
    rng = np.random.default_rng(seed)
    data = rng.uniform(-10, 55, size=(n, h, w)).astype(np.float32)
    if nan_frac:
        data[:, : int(h * nan_frac)] = np.nan
    if times is None:
        times = pd.date_range("2024-01-01", periods=n, freq="5min").values
    return xr.DataArray(data, dims=("time", "y", "x"), coords={"time": times})


def cfg(**kw):
    base = dict(n_in=3, n_out=4, crop=16, coarsen_factors=(1, 2), time_strides=(1, 2), flips=True)
    base.update(kw)
    return SamplerConfig(**base)


def test_sample_shapes_and_ranges():
    s = WindowSampler([("a", make_seq(nan_frac=0.2))], cfg(min_valid_fraction=0.0), seed=1)
    b = s.sample_batch(5)
    assert b["inputs"].shape == (5, 3, 16, 16)
    assert b["targets"].shape == (5, 4, 16, 16)
    assert b["mask"].shape == (5, 4, 16, 16)
    for k in b:
        assert b[k].dtype == np.float32
        assert np.isfinite(b[k]).all()
    assert b["inputs"].min() >= 0 and b["inputs"].max() <= 1
    assert set(np.unique(b["mask"])) <= {0.0, 1.0}


def test_mask_marks_nodata_and_network_sees_floor():
    seq = make_seq(n=10, h=16, w=16)
    seq[:, :4, :] = np.nan  # top 4 rows no data
    c = cfg(n_in=2, n_out=3, crop=16, coarsen_factors=(1,), time_strides=(1,), flips=False, min_valid_fraction=0.0)
    out = WindowSampler([("a", seq)], c, seed=0).sample()
    assert (out["mask"][:, :4] == 0).all() and (out["mask"][:, 4:] == 1).all()
    assert (out["inputs"][:, :4] == 0).all() and (out["targets"][:, :4] == 0).all()


def test_sampler_is_deterministic_and_state_round_trips():
    seqs = [("a", make_seq(seed=1)), ("b", make_seq(seed=2, n=25, h=40, w=60))]
    s1 = WindowSampler(seqs, cfg(), seed=7)
    s2 = WindowSampler(seqs, cfg(), seed=7)
    for _ in range(3):
        b1, b2 = s1.sample_batch(4), s2.sample_batch(4)
        for k in b1:
            np.testing.assert_array_equal(b1[k], b2[k])
    state = s1.state_dict()
    expected = [s1.sample_batch(3) for _ in range(3)]
    s3 = WindowSampler(seqs, cfg(), seed=123)  # a different seed: the state overrides it
    s3.load_state_dict(state)
    for e in expected:
        got = s3.sample_batch(3)
        for k in e:
            np.testing.assert_array_equal(e[k], got[k])
    assert s3.count == s1.count
    other = WindowSampler(seqs, cfg(), seed=8).sample_batch(4)
    assert not np.array_equal(other["inputs"], b1["inputs"])


def test_state_survives_torch_weights_only_load(tmp_path):
    torch = pytest.importorskip("torch")
    s = WindowSampler([("a", make_seq())], cfg(), seed=3)
    s.sample_batch(2)
    torch.save({"sampler": s.state_dict()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)["sampler"]
    s2 = WindowSampler([("a", make_seq())], cfg(), seed=0)
    s2.load_state_dict(state)
    np.testing.assert_array_equal(s.sample()["inputs"], s2.sample()["inputs"])


def test_window_content_follows_info():
    seq = make_seq(n=20, h=64, w=64, seed=5)
    c = cfg(n_in=2, n_out=2, crop=16, coarsen_factors=(1,), time_strides=(1, 2, 3), min_echo_fraction=0.0)
    s = WindowSampler([("a", seq)], c, seed=11)
    for _ in range(10):
        out = s.sample(return_info=True)
        i = out["info"]
        raw = seq.values[i["start"] : i["start"] + 3 * i["stride"] + 1 : i["stride"],
                         i["y"] : i["y"] + 16, i["x"] : i["x"] + 16]
        raw = dihedral(raw, i["rot"], i["flip"])
        expect = np.clip((raw - -10) / 80, 0, 1)
        np.testing.assert_allclose(out["inputs"], expect[:2], atol=1e-6)
        np.testing.assert_allclose(out["targets"], expect[2:], atol=1e-6)


def test_dihedral_shapes_and_group():
    a = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    assert dihedral(a, 1, False).shape == (2, 5, 3)
    assert dihedral(a, 2, True).shape == (2, 3, 5)
    np.testing.assert_array_equal(dihedral(a, 4, False), a)
    np.testing.assert_array_equal(dihedral(dihedral(a, 0, True), 0, True), a)
    np.testing.assert_array_equal(dihedral(a, 1, False)[0], np.rot90(a[0]))


def test_rectangular_crops_rotate_to_square():
    seq = make_seq(n=12, h=20, w=70)
    s = WindowSampler([("a", seq)], cfg(crop=16, coarsen_factors=(1,)), seed=0)
    for _ in range(8):
        assert s.sample()["inputs"].shape == (3, 16, 16)


def test_coarsen_pools_in_linear_z_and_ignores_nan():
    f = np.array([[[20.0, 30.0], [np.nan, np.nan]]], dtype=np.float32)  # one 2x2 block
    out = coarsen_dbz(f, 2)
    expect = 10 * np.log10((10**2 + 10**3) / 2)  # mean of the valid pixels in Z
    assert out.shape == (1, 1, 1)
    np.testing.assert_allclose(out[0, 0, 0], expect, rtol=1e-6)
    assert out[0, 0, 0] > 25.0  # not the dBZ mean
    allnan = np.full((1, 2, 2), np.nan, dtype=np.float32)
    assert np.isnan(coarsen_dbz(allnan, 2)).all()
    floor = np.full((2, 4, 4), -10.0, dtype=np.float32)
    np.testing.assert_allclose(coarsen_dbz(floor, 2), -10.0, atol=1e-5)
    assert coarsen_dbz(floor, 2).shape == (2, 2, 2)
    np.testing.assert_array_equal(coarsen_dbz(floor, 1), floor)
    with pytest.raises(ValueError):
        coarsen_dbz(np.zeros((1, 3, 4), np.float32), 2)


def test_coarsened_samples_have_crop_size():
    seq = make_seq(n=12, h=64, w=64)
    c = cfg(crop=16, coarsen_factors=(2,), time_strides=(1,))
    out = WindowSampler([("a", seq)], c, seed=0).sample(return_info=True)
    assert out["info"]["factor"] == 2 and out["inputs"].shape == (3, 16, 16)


def test_time_segments_and_gap_windows():
    t = pd.date_range("2024-01-01", periods=10, freq="5min").values
    t = np.concatenate([t[:6], t[6:] + np.timedelta64(60, "m")])  # gap after frame 5
    seg = time_segments(t)
    np.testing.assert_array_equal(seg, [0] * 6 + [1] * 4)
    sd = as_seqdata("g", make_seq(n=10, times=t))
    np.testing.assert_array_equal(sd.valid_starts(4), [0, 1, 2, 6])
    np.testing.assert_array_equal(sd.valid_starts(7), [])
    # windows never cross the gap, at any stride
    c = cfg(n_in=2, n_out=1, time_strides=(1, 2), flips=False, min_echo_fraction=0.0)
    s = WindowSampler([as_seqdata("g", make_seq(n=10, times=t))], c, seed=0)
    for _ in range(30):
        i = s.sample(return_info=True)["info"]
        span = 2 * i["stride"] + 1
        assert seg[i["start"]] == seg[i["start"] + span - 1]


def test_sequence_too_small_is_a_clear_error():
    with pytest.raises(NowcastError, match="window"):
        WindowSampler([("a", make_seq(n=5))], cfg(), seed=0)
    with pytest.raises(NowcastError, match="no training sequences"):
        WindowSampler([], cfg(), seed=0)


def test_dry_crops_are_mostly_rejected():
    rng = np.random.default_rng(0)
    data = np.full((12, 64, 64), -10.0, np.float32)
    data[:, :16, :16] = rng.uniform(30, 50, size=(12, 16, 16))  # echo in one corner only
    seq = xr.DataArray(data, dims=("time", "y", "x"))
    c = cfg(crop=16, coarsen_factors=(1,), time_strides=(1,), flips=False,
            min_echo_fraction=0.05, dry_keep_probability=0.0)
    s = WindowSampler([("a", seq)], c, seed=0)
    for _ in range(10):
        i = s.sample(return_info=True)["info"]
        assert i["y"] < 16 and i["x"] < 16  # every kept crop overlaps the echo
    c.dry_keep_probability = 1.0
    s = WindowSampler([("a", seq)], c, seed=0)
    ys = [s.sample(return_info=True)["info"]["y"] for _ in range(20)]
    assert max(ys) >= 16  # with keep probability 1 dry crops come through


def test_synthetic_pool_mix():
    real, syn = make_seq(seed=1), make_seq(seed=2)
    c = cfg(synthetic_fraction=0.5)
    s = WindowSampler([("real", real)], c, seed=0, synthetic=[("syn", syn)])
    names = [s.sample(return_info=True)["info"]["sequence"] for _ in range(40)]
    assert 5 < names.count("syn") < 35
    only_syn = WindowSampler([], c, seed=0, synthetic=[("syn", syn)])
    assert only_syn.sample(return_info=True)["info"]["sequence"] == "syn"


def test_split_in_time_keeps_a_gap():
    seq = make_seq(n=60)
    tr, va = split_in_time(seq, 0.25, gap=7, min_val=7)
    assert tr.sizes["time"] == 60 - 15 - 7 and va.sizes["time"] == 15
    assert (va.time.values[0] - tr.time.values[-1]) == np.timedelta64(8 * 5, "m")
    tr, va = split_in_time(make_seq(n=20), 0.25, gap=7, min_val=7)
    assert va is None and tr.sizes["time"] == 20


def test_split_by_time_range_keeps_gaps_on_both_sides():
    seq = make_seq(n=60)  # 5-minute frames from 2024-01-01 00:00
    start, end = parse_time_range("2024-01-01T02:00/2024-01-01T03:00")  # frames 24 .. 35
    parts, va = split_by_time_range(seq, start, end, gap=7, min_len=7)
    assert va.sizes["time"] == 12 and str(va.time.values[0])[:16] == "2024-01-01T02:00"
    assert [p.sizes["time"] for p in parts] == [24 - 7, 60 - 36 - 7]
    assert parts[0].time.values[-1] == seq.time.values[16] and parts[1].time.values[0] == seq.time.values[43]
    # a range at the end leaves one training part; a range the data miss leaves the sequence whole
    parts, va = split_by_time_range(seq, *parse_time_range("2024-01-01T04:00/2024-01-02T00:00"), gap=7, min_len=7)
    assert [p.sizes["time"] for p in parts] == [48 - 7] and va.sizes["time"] == 12
    parts, va = split_by_time_range(seq, *parse_time_range("2023-01-01/2023-01-02"), gap=7, min_len=7)
    assert va is None and parts[0] is seq


@pytest.mark.parametrize("text", ["2024-01-01", "2024-01-01T03:00/2024-01-01T02:00", "yesterday/today"])
def test_parse_time_range_refuses(text):
    with pytest.raises(NowcastError, match="time range"):
        parse_time_range(text)


def _lazy_copy(seq, folder):
    """`seq` written as per-frame files and opened lazily (nowcast.archive)."""
    from nowcast.radar import open_radar

    for k in range(seq.sizes["time"]):
        seq.isel(time=[k]).assign_attrs(units="dBZ").to_dataset(name="dbz").to_netcdf(folder / f"f{k:03d}.nc")
    return open_radar(str(folder / "f*.nc"), lazy=True, index_cache=False)


def test_lazy_frames_slice_like_the_array(tmp_path):
    from nowcast.data import LazyFrames

    seq = make_seq(n=12, h=20, w=24, nan_frac=0.1)
    eager, lazy = as_seqdata("a", seq), as_seqdata("a", _lazy_copy(seq, tmp_path))
    assert isinstance(lazy.frames, LazyFrames) and lazy.frames.shape == eager.frames.shape
    np.testing.assert_array_equal(lazy.segment, eager.segment)
    for key in [slice(2, 9, 3), (slice(1, 6), slice(3, 19), slice(0, 8)), (slice(None), 4), 7]:
        np.testing.assert_array_equal(lazy.frames[key], eager.frames[key])
        assert lazy.frames[key].dtype == np.float32


@pytest.mark.parametrize("frame", ["eulerian", pytest.param("lagrangian", marks=pytest.mark.slow)])
def test_sampler_on_a_lazy_sequence_draws_the_same_samples(tmp_path, frame):
    seq = make_seq(n=14, h=40, w=40)
    c = cfg(crop=16, frame=frame, coarsen_factors=(1, 2) if frame == "eulerian" else (1,))
    eager = WindowSampler([("a", seq)], c, seed=3)
    lazy = WindowSampler([("a", _lazy_copy(seq, tmp_path))], c, seed=3)
    for _ in range(2 if frame == "lagrangian" else 6):
        a, b = eager.sample(return_info=True), lazy.sample(return_info=True)
        assert a["info"] == b["info"]
        for k in ("inputs", "targets", "mask"):
            np.testing.assert_array_equal(a[k], b[k])
