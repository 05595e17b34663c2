"""Network tests: shapes, determinism, the warp, the MotionGRU formulas, gradients, overfitting, counts."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from nowcast.errors import NowcastError
from nowcast.nn import ModelConfig, MotionGRU, build_model, count_parameters, deform_warp

TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=4)


def tiny(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**TINY, **kw}))


# -- parameter counts of the paper's radar setting -------------------------------------------------


def _groups(model):
    g = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        key = parts[0] if parts[0] != "motion_grus" else parts[2]
        g[key] = g.get(key, 0) + p.numel()
    return g


def test_parameter_counts_match_paper_design():
    motion = build_model(ModelConfig())
    g = _groups(motion)
    assert g["blocks"] == 6_048_768
    assert g["warp_weight"] + g["conv_ur"] + g["conv_z"] + g["conv_mask"] == 60_561
    assert g["enc"] == 76_848
    assert g["dec"] == 49_344
    assert g["gate"] == 614_592
    assert g["highway_in"] == 1_024
    assert g["conv_out"] == 1_024
    assert count_parameters(motion) == 6_852_161
    plain = build_model(ModelConfig(motion=False, highway=False))
    assert count_parameters(plain) == 6_049_792


# -- config ------------------------------------------------------------------------------------------


def test_config_round_trip_and_unknown_keys():
    cfg = ModelConfig(**TINY)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(NowcastError, match="unknown key"):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})
    with pytest.raises(NowcastError, match="backbone"):
        ModelConfig(backbone="transformer")
    with pytest.raises(NowcastError):
        ModelConfig(hidden=[8, 16], num_layers=2)


# -- shapes and determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["predrnn", "convlstm"])
def test_odd_sizes_and_motion_layout(backbone):
    model = tiny(backbone=backbone).eval()
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out, motion = model(x, 4, return_motion=True)
    assert out.shape == (2, 4, 37, 53)
    steps, n_gru = 3 + 4 - 1, 1
    h, w = math.ceil(37 / 4), math.ceil(53 / 4)  # patch 2 x encoder stride 2
    for key in ("trend", "filter", "transient"):
        assert motion[key].shape == (2, steps, n_gru, 18, h, w)
    assert torch.allclose(motion["filter"], motion["trend"] + motion["transient"])


def test_deterministic_bit_identical():
    model = tiny().eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        a = model(x, 4)
        b = model(x, 4)
    assert torch.equal(a, b)
    assert torch.equal(tiny().eval()(x, 4).detach(), a)  # same seed, same weights, same output


@pytest.mark.parametrize(
    "switches",
    [
        dict(motion=False),
        dict(highway=False),
        dict(trend=False),
        dict(transient=False),
        dict(motion=False, highway=False),
        dict(backbone="convlstm", motion=False),
        dict(layer_norm=True),
    ],
)
def test_ablations_build_and_run(switches):
    model = tiny(**switches)
    out = model(torch.rand(2, 3, 16, 16), 4)
    assert out.shape == (2, 4, 16, 16) and torch.isfinite(out).all()


def test_plain_backbone_has_no_motion_parts():
    names = [n for n, _ in tiny(motion=False, highway=False).named_parameters()]
    assert not any(n.startswith(("motion_grus", "highway_in")) for n in names)


# -- the warp ----------------------------------------------------------------------------------------


def test_warp_zero_offset_is_plain_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 7, 9)
    w = torch.randn(4, 5, 3, 3)
    got = deform_warp(x, torch.zeros(2, 18, 7, 9), torch.ones(2, 9, 7, 9), w)
    assert torch.allclose(got, F.conv2d(x, w, padding=1), atol=1e-5)


@pytest.mark.parametrize("dy,dx", [(2, -1), (-1, 3), (0, 1)])
def test_warp_integer_offset_samples_from_position_plus_offset(dy, dx):
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 5, 6] = 1.0
    x[0, 0, 2:4, 8] = 0.5
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1.0  # centre tap only: the warp is pure sampling
    offset = torch.zeros(1, 9, 2, 12, 12)
    offset[:, :, 0] = dy  # channel 2k = dy
    offset[:, :, 1] = dx  # channel 2k + 1 = dx
    got = deform_warp(x, offset.view(1, 18, 12, 12), torch.ones(1, 9, 12, 12), w)[0, 0]
    # out(y, x) = in(y + dy, x + dx), zero outside: the pattern moves by (-dy, -dx)
    want = torch.zeros(12, 12)
    for y in range(12):
        for xx in range(12):
            if 0 <= y + dy < 12 and 0 <= xx + dx < 12:
                want[y, xx] = x[0, 0, y + dy, xx + dx]
    assert torch.allclose(got, want, atol=1e-5)
    assert got[5 - dy, 6 - dx] == pytest.approx(1.0, abs=1e-5)


def test_warp_fractional_offset_is_bilinear():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1.0
    offset = torch.zeros(1, 9, 2, 4, 4)
    offset[:, :, 1] = 0.25
    got = deform_warp(x, offset.view(1, 18, 4, 4), torch.ones(1, 9, 4, 4), w)[0, 0]
    assert got[1, 1].item() == pytest.approx(5.25, abs=1e-5)
    assert got[1, 3].item() == pytest.approx(0.75 * 7, abs=1e-5)  # right neighbour outside: zero


# -- MotionGRU formulas ------------------------------------------------------------------------------


def test_motiongru_starts_with_zero_filter_and_plain_conv_warp():
    torch.manual_seed(0)
    gru = MotionGRU(8, kernel_size=3)
    h = torch.randn(1, 8, 8, 8)
    z = torch.zeros(1, 18, 4, 4)
    out, f, d, ft = gru(h, z, z)
    assert torch.equal(f, z) and torch.equal(d, z) and torch.equal(ft, z)
    e = gru.enc(h)
    warp = deform_warp(e, f, torch.full((1, 9, 4, 4), 0.5), gru.warp_weight)
    assert torch.allclose(warp, 0.5 * F.conv2d(e, gru.warp_weight, padding=1), atol=1e-5)


def test_trend_and_transient_update_by_hand():
    torch.manual_seed(0)
    gru = MotionGRU(8, kernel_size=3, alpha=0.3)
    with torch.no_grad():
        for p in (gru.conv_ur.weight, gru.conv_ur.bias, gru.conv_z.weight, gru.conv_z.bias):
            p.normal_(0, 0.2)
    h = torch.randn(1, 8, 8, 8)
    f_prev = torch.randn(1, 18, 4, 4)
    d_prev = torch.randn(1, 18, 4, 4)
    with torch.no_grad():
        _, f, d, ft = gru(h, f_prev, d_prev)
        e = gru.enc(h)
        u, r = torch.sigmoid(gru.conv_ur(torch.cat([e, f_prev], 1))).chunk(2, 1)
        zc = torch.tanh(gru.conv_z(torch.cat([e, r * f_prev], 1)))
    want_ft = u * zc + (1 - u) * f_prev
    want_d = d_prev + 0.3 * (f_prev - d_prev)
    assert torch.allclose(ft, want_ft, atol=1e-6)
    assert torch.allclose(d, want_d, atol=1e-6)
    assert torch.allclose(f, want_ft + want_d, atol=1e-6)


# -- training behaviour ------------------------------------------------------------------------------


def test_gradients_reach_every_parameter():
    model = tiny()
    with torch.no_grad():  # leave the zero start, where gate gradients vanish by construction
        for gru in model.motion_grus:
            for p in (gru.conv_ur.weight, gru.conv_z.weight, gru.conv_mask.weight):
                p.normal_(0, 0.1)
    x = torch.rand(2, 3, 16, 16)
    y = torch.rand(2, 4, 16, 16)
    out = model(x, 4, truth=y, sampling_mask=torch.tensor([[1, 0, 1], [0, 1, 0]]))
    F.mse_loss(out, y).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


def test_scheduled_sampling_feeds_truth():
    model = tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    y = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        free = model(x, 4)
        ones = model(x, 4, truth=y, sampling_mask=torch.ones(1, 3))
        zeros = model(x, 4, truth=y, sampling_mask=torch.zeros(1, 3))
    assert torch.equal(free, zeros)
    assert torch.equal(free[:, 0], ones[:, 0])  # the first forecast only sees observed frames
    assert not torch.allclose(free[:, 1:], ones[:, 1:])


def test_residual_model_starts_as_persistence_and_adds_its_change():
    model = tiny(residual=True).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x, 4)
        assert torch.equal(out, x[:, -1:].expand(-1, 4, -1, -1))  # zero output layer: every lead = last frame
        model.conv_out.weight.fill_(0.01)
        plain = tiny(residual=False).eval()
        plain.load_state_dict(model.state_dict())
        # the first lead is the last frame plus what the plain network would forecast from the same states
        assert torch.allclose(model(x, 1)[:, 0], x[:, -1] + plain(x, 1)[:, 0], atol=1e-6)
    assert ModelConfig.from_dict(ModelConfig(**TINY, residual=True).to_dict()).residual is True
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig(**TINY).to_dict().items()
                                  if k != "residual"}).residual is False  # older checkpoints


def test_tiny_model_overfits_one_sequence():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_layers=2, hidden=16, kernel_size=3, patch_size=2, input_frames=3, output_frames=3))
    # a blob moving one pixel right per frame
    frames = torch.zeros(1, 6, 16, 16)
    for t in range(6):
        frames[0, t, 5:9, 2 + t : 6 + t] = 0.8
    x, y = frames[:, :3], frames[:, 3:]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(200):
        opt.zero_grad()
        out = model(x, 3)
        loss = F.mse_loss(out, y) + F.l1_loss(out, y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        if loss.item() < first / 10:
            break
    assert loss.item() < first / 10, (first, loss.item())


def test_bad_inputs_raise_value_error():
    # the numerical core raises ValueError; NowcastError is for the edges (files, options, checkpoints)
    model = tiny()
    with pytest.raises(ValueError, match="shaped"):
        model(torch.rand(3, 16, 16), 4)
    with pytest.raises(ValueError, match="does not fit"):
        model(torch.rand(1, 3, 16, 16), 4, truth=torch.rand(1, 4, 8, 8))


# -- opt-in compilation for inference ------------------------------------------------------------------


def test_compiled_step_equals_eager():
    # dynamo traces the recurrent step; backend "eager" runs the traced ops as they are, so equal bit for bit
    model = tiny(residual=True).eval()
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        want, want_motion = model(x, 4, return_motion=True)
        model.compile_for_inference(backend="eager", channels_last=False)
        got, got_motion = model(x, 4, return_motion=True)
    assert model._compiled_step is not None
    assert torch.equal(got, want)
    assert all(torch.equal(got_motion[k], want_motion[k]) for k in want_motion)


def test_failed_compilation_falls_back_to_eager(monkeypatch):
    calls = []

    def broken_compile(fn, **kwargs):
        def compiled(*args):
            calls.append(1)
            raise RuntimeError("no C++ compiler")

        return compiled

    model = tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = model(x, 4)
        monkeypatch.setattr(torch, "compile", broken_compile)
        model.compile_for_inference(channels_last=False)
        got = model(x, 4)
        again = model(x, 4)
    assert calls == [1]  # tried once, then eager for good
    assert model._compiled_step is None
    assert torch.equal(got, want) and torch.equal(again, want)
    with torch.no_grad():  # by default the weights also go channels-last: the same forecast up to rounding
        assert torch.allclose(model.compile_for_inference()(x, 4), want, atol=1e-6)


def test_compiled_step_only_without_gradients(monkeypatch):
    calls = []

    def counting_compile(fn, **kwargs):
        def compiled(*args):
            calls.append(1)
            return fn(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", counting_compile)
    model = tiny().compile_for_inference()
    y = torch.rand(1, 4, 16, 16)
    out = model(torch.rand(1, 3, 16, 16), 4, truth=y, sampling_mask=torch.ones(1, 3))
    F.mse_loss(out, y).backward()  # training stays eager
    assert not calls
    with torch.inference_mode():
        model.eval()(torch.rand(1, 3, 16, 16), 4)
    assert len(calls) == 3 + 4 - 1
    model.compile_for_inference(False)
    assert model._compiled_step is None


@pytest.mark.slow
def test_inductor_compiled_model_close_to_eager():
    model = tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = model(x, 4)
        got = model.compile_for_inference()(x, 4)
    assert torch.allclose(got, want, atol=1e-5)


def test_bf16_inference_mode_same_as_no_grad():
    # under inference mode the model runs as under no_grad (so autocast casts each weight once per call)
    model = tiny().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(x, 4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(x, 4)
    with torch.inference_mode():
        fp32 = model(x, 4)
    assert torch.equal(got, want)
    assert fp32.is_inference()  # without autocast nothing changes


def test_channels_last_bf16_same_as_nchw_and_pickles():
    model = tiny(residual=True).eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(x, 4)
        got = model.use_channels_last()(x, 4)
    assert torch.allclose(got, want, atol=1e-2)
    restored = pickle.loads(pickle.dumps(model.compile_for_inference(backend="eager")))
    assert restored._compiled_step is None and restored.channels_last
