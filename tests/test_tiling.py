"""Tiled inference: the layout, the blending weights, and tiled forecasts against whole-grid ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nowcast import tiling
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.nn import ModelConfig, build_model
from nowcast.units import dbz_to_unit

# A tiny Lagrangian network with random weights (so the MotionGRU offsets are not zero). With 3 inputs
# and 2 leads a change of one input pixel reaches at most 94 pixels (measured: nothing at all beyond
# 96 pixels), so a halo of 96 plus half the blend covers its whole receptive field.
TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=2,
            residual=True, frame="lagrangian")
FULL_FIELD = 96


def _tiny(frame="lagrangian"):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**TINY, "frame": frame})
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model, {"config": cfg, "name": "tiny"}


def _radar(shape=(3, 200, 176), seed=0):
    """Moving blobs of echo on a dry background, with a band of no data."""
    rng = np.random.default_rng(seed)
    t, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.full(shape, -10.0, np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 30)
        for k in range(t):
            blob = 50 * np.exp(-(((yy - cy - 1.5 * k) ** 2 + (xx - cx - 2.0 * k) ** 2) / (2 * r * r)))
            frames[k] = np.maximum(frames[k], blob - 5)
    frames[:, :, :6] = np.nan
    return frames


# ------------------------------------------------------------------------------ layout and weights


def test_spans_cover_the_grid_with_aligned_windows():
    got = tiling.spans(1226, 256, 48, multiple=8)
    assert got[0].core_start == 0 and got[-1].core_stop == 1226
    assert all(a.core_stop == b.core_start for a, b in zip(got[:-1], got[1:]))
    assert all(s.start % 8 == 0 for s in got)  # the patch and encoder grids of every window are the whole grid's
    assert all(s.start == max(0, s.core_start - 48) and s.stop == min(1226, s.core_stop + 48) for s in got)
    # 1226 = 4 x 256 + 202: the last core is a real tile; 1030 = 4 x 256 + 6: the sliver joins the last
    assert [s.core_stop - s.core_start for s in got] == [256, 256, 256, 256, 202]
    assert [s.core_stop - s.core_start for s in tiling.spans(1030, 256, 48, 8)] == [256, 256, 256, 262]
    assert tiling.spans(100, 256, 48, 8) == [tiling.Span(0, 100, 0, 100)]
    with pytest.raises(ValueError):
        tiling.spans(100, 0, 8)


def test_ramp_halves_sum_to_one():
    for width in (2, 8, 31, 64):
        up = tiling.ramp(width)
        np.testing.assert_allclose(up + up[::-1], 1.0, atol=1e-15)
        assert np.all(np.diff(up) > 0) and 0 < up[0] < 0.5 < up[-1] < 1


@pytest.mark.parametrize("shape, tile, halo, blend", [((300, 170), 64, 16, None), ((97, 250), 32, 24, 16),
                                                       ((64, 64), 16, 8, 0)])
def test_weights_sum_to_one_and_vanish_beyond_the_blend(shape, tile, halo, blend):
    tl = tiling.tiles(shape, tile, halo, multiple=8, blend=blend)
    total = np.zeros(shape)
    for t in tl:
        assert t.weight.shape == (t.rows.stop - t.rows.start, t.cols.stop - t.cols.start)
        assert t.weight.min() >= 0 and t.weight.max() <= 1
        total[t.rows, t.cols] += t.weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # the outermost band of every interior window edge (where the window lacks neighbours) weighs nothing
    inner = [t for t in tl if t.rows.start > 0]
    assert all(np.all(t.weight[:4] == 0) for t in inner)


def test_blending_leaves_no_seam():
    """Each tile answers a different constant: with blending the field changes smoothly across the
    boundaries (by at most pi / (2 blend) of the jump per pixel, the sin^2 ramp's steepest slope);
    without blending it jumps at once."""
    x = torch.rand(1, 1, 128, 128)

    for blend, worst in ((32, np.pi / 64 + 1e-6), (0, None)):
        constants = iter([0.0, 3.0, 1.0, 4.0])
        out = tiling.run_tiled(lambda w: torch.full((1, 1, *w.shape[-2:]), next(constants)), x, 1,
                               tiling.tiles((128, 128), 64, 32, 8, blend=blend))[0, 0]
        assert out[0, 0] == 0 and out[-1, -1] == 4
        step = max(out.diff(dim=0).abs().max().item(), out.diff(dim=1).abs().max().item())
        if worst is None:
            assert step == 3.0  # the seam between the first two tiles
        else:
            assert step <= worst * 3.0


def test_a_position_independent_function_is_reconstructed_exactly():
    x = torch.rand(2, 3, 150, 121)
    out = tiling.run_tiled(lambda w: 2.0 * w[:, 1:], x, 2, tiling.tiles((150, 121), 48, 16, 8))
    torch.testing.assert_close(out, 2.0 * x[:, 1:], atol=1e-6, rtol=0)


def test_empty_windows_are_computed_once_per_shape():
    x = torch.zeros(1, 2, 256, 256)
    x[..., 10, 10] = 0.5  # echo in the top-left window only
    calls = []

    def fn(window):
        calls.append(tuple(window.shape[-2:]))
        return window[:, :1] + 1.0

    tl = tiling.tiles((256, 256), 64, 16, 8)
    out = tiling.run_tiled(fn, x, 1, tl)
    assert len(tl) == 16 and len(calls) == len(set(calls)) + 1 < len(tl)
    torch.testing.assert_close(out, x[:, :1] + 1.0)


def test_bad_blend_is_refused():
    with pytest.raises(ValueError, match="blend"):
        tiling.tiles((100, 100), 32, 8, 8, blend=40)


# ------------------------------------------------------------------------------ tiled forecasts


@pytest.mark.parametrize("frame", ["lagrangian", "eulerian"])
def test_tiled_forecast_equals_the_whole_grid_when_the_halo_covers_the_receptive_field(frame):
    """Tolerance 1e-3 dBZ (about 1e-5 of the network's 80 dBZ range): float32 rounding of differently
    shaped convolutions, grown over the recurrent steps by the random weights' large gains."""
    model, info = _tiny(frame)
    x = _radar()
    whole = ModelForecaster(model, info, device="cpu", tile_size=0)(x, 2)
    tiled_fc = ModelForecaster(model, info, device="cpu", tile_size=64, tile_halo=FULL_FIELD + 16)
    assert len(tiled_fc.tiles_for(x.shape[1:], 2)) == 9
    tiled = tiled_fc(x, 2)
    assert np.array_equal(np.isnan(whole), np.isnan(tiled))
    ok = np.isfinite(whole)
    assert ok.mean() > 0.8
    assert np.abs(tiled[ok] - whole[ok]).max() < 1e-3
    # a halo short of the receptive field is measurably different: the test above is not vacuous
    short = ModelForecaster(model, info, device="cpu", tile_size=64, tile_halo=8)(x, 2)
    assert np.abs(short[ok] - whole[ok]).max() > 1e-2


def test_auto_tiling_follows_the_grid_size(monkeypatch):
    model, info = _tiny()
    fc = ModelForecaster(model, info, device="cpu")
    assert fc.tile_size is None and fc.tiles_for((200, 176), 2) is None
    monkeypatch.setattr(tiling, "AUTO_TILE_PIXELS", 100 * 100)
    monkeypatch.setattr(tiling, "DEFAULT_TILE", 64)
    assert len(fc.tiles_for((200, 176), 2)) == 9
    assert ModelForecaster(model, info, device="cpu", tile_size=0).tiles_for((200, 176), 2) is None
    # the halo grows with the number of recurrent steps and, for an Eulerian model, with how far echoes move
    cfg = info["config"]
    assert tiling.halo_for(cfg, 20, True) > tiling.halo_for(cfg, 10, True) >= tiling.LAGRANGIAN_HALO
    assert tiling.halo_for(cfg, 10, False) > tiling.halo_for(cfg, 10, True)
    assert tiling.halo_for(cfg, 10, True) % cfg.pad_multiple == 0


def test_bad_tile_size_is_refused():
    model, info = _tiny()
    for bad in (-1, 2.5, True):
        with pytest.raises(NowcastError, match="tile_size"):
            ModelForecaster(model, info, device="cpu", tile_size=bad)


def test_motion_capture_runs_on_the_whole_grid():
    model, info = _tiny()
    fc = ModelForecaster(model, info, device="cpu", tile_size=64, tile_halo=FULL_FIELD + 16)
    x = _radar()
    out, motion = fc.predict_with_motion(x, 2)
    assert motion["trend"].shape[-2:] == (50, 44)  # the encoded grid of the whole 200 x 176 frame
    assert np.abs(np.nan_to_num(out - fc(x, 2))).max() < 1e-3


@pytest.mark.slow
def test_shipped_model_tiled_close_to_whole_grid():
    """The shipped model's influence reaches past any practical halo (it fades over hundreds of pixels),
    so tiles with the default halo agree with the whole grid to a fraction of a dBZ, not to rounding:
    exactly for the first leads (their receptive field is inside the halo), within 1 dBZ at the last
    (measured 0.63 dBZ here; 0.37 on the FMI composite with the default 512-pixel tiles)."""
    from nowcast.synthetic import generate

    fc = ModelForecaster.from_checkpoint("motionrnn-lagrangian-radar", device="cpu")
    x = generate(n_frames=5, height=384, width=320, seed=3).values
    assert (dbz_to_unit(x) > 0.5).mean() > 0.01  # heavy echo to disagree about
    whole = ModelForecaster(fc.model, fc.info, device="cpu", tile_size=0)(x, 10)
    tiled = ModelForecaster(fc.model, fc.info, device="cpu", tile_size=192)(x, 10)
    assert np.array_equal(np.isnan(whole), np.isnan(tiled))
    diff = np.abs(np.nan_to_num(tiled - whole))
    assert diff[:2].max() < 1e-3
    assert diff.max() < 1.0 and diff[np.isfinite(whole)].mean() < 0.03


# ------------------------------------------------------------------------------ the command line


def test_predict_tile_size_option(tmp_path, monkeypatch, capsys):
    import xarray as xr

    from nowcast.checkpoint import save_checkpoint
    from nowcast.cli import main
    from nowcast.cli import predict as predict_cli

    model, info = _tiny()
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model, info["config"], {})
    calls = []
    real = tiling.run_tiled
    monkeypatch.setattr(tiling, "run_tiled", lambda *a: calls.append(len(a[3])) or real(*a))
    outs = {}
    for size in ("0", "32"):
        outs[size] = tmp_path / f"fc{size}.nc"
        args = ["predict", "sample_data/radar.nc", "--model", str(ckpt), "--leads", "2", "--tile-size", size]
        assert main(args + ["-o", str(outs[size])]) == 0
    assert calls == [16]  # 128 x 128 in tiles of 32; none for --tile-size 0
    a, b = (xr.open_dataset(outs[k])["reflectivity"].values for k in ("0", "32"))
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.nanmax(np.abs(a - b)) <= 0.011  # 0.01 dBZ packing
    assert main(["predict", "sample_data/radar.nc", "--method", "extrapolation", "--tile-size", "64",
                 "-o", str(tmp_path / "x.nc")]) == 2
    assert "--tile-size applies to models only" in capsys.readouterr().err
    assert str(tiling.DEFAULT_TILE) in predict_cli.TILE_SIZE.help
    assert f"{math.isqrt(tiling.AUTO_TILE_PIXELS)} x" in predict_cli.TILE_SIZE.help
