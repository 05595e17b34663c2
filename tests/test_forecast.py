"""ModelForecaster tests: the forecast-method contract on a tiny untrained checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.checkpoint import load_model, save_checkpoint
from nowcast.errors import NowcastError
from nowcast.forecast import ModelForecaster
from nowcast.nn import ModelConfig, build_model
from nowcast.units import DBZ_FLOOR

TINY = dict(num_layers=2, hidden=8, kernel_size=3, patch_size=2, input_frames=3, output_frames=4)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    path = tmp_path_factory.mktemp("m") / "tiny-motion.safetensors"
    save_checkpoint(path, build_model(cfg), cfg, {})
    return path


def _inputs(rng, shape=(4, 21, 27)):
    x = rng.uniform(-15, 60, size=shape).astype(np.float32)
    x[..., 3:8, 4:10] = np.nan  # no data
    return x


def test_nan_kept_and_finite_elsewhere(ckpt):
    fc = ModelForecaster.from_checkpoint(ckpt, device="cpu")
    assert fc.name == "tiny-motion" and fc.input_frames == 3
    x = _inputs(np.random.default_rng(0))
    out = fc(x, 5)
    assert out.shape == (5, 21, 27) and out.dtype == np.float32
    nan = np.isnan(x[-1])
    assert np.isnan(out[:, nan]).all()
    assert np.isfinite(out[:, ~nan]).all()
    assert out[:, ~nan].min() >= DBZ_FLOOR and out[:, ~nan].max() <= 70.0


def test_batches_match_single_and_batch_size(ckpt):
    rng = np.random.default_rng(1)
    x = np.stack([_inputs(rng) for _ in range(3)])
    a = ModelForecaster.from_checkpoint(ckpt, device="cpu", batch_size=1)(x, 3)
    b = ModelForecaster.from_checkpoint(ckpt, device="cpu", batch_size=8)(x, 3)
    assert a.shape == (3, 3, 21, 27)
    np.testing.assert_allclose(a, b, atol=1e-4, equal_nan=True)
    np.testing.assert_array_equal(a[1], ModelForecaster.from_checkpoint(ckpt, device="cpu")(x[1], 3))


def test_deterministic_and_from_model_info(ckpt):
    model, info = load_model(ckpt)
    fc = ModelForecaster(model, info)
    x = _inputs(np.random.default_rng(2))
    np.testing.assert_array_equal(fc(x, 2), fc(x, 2))


def test_too_few_frames(ckpt):
    fc = ModelForecaster.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(NowcastError, match="at least 3"):
        fc(np.zeros((2, 8, 8), np.float32), 2)


def test_predict_with_motion(ckpt):
    fc = ModelForecaster.from_checkpoint(ckpt, device="cpu")
    x = _inputs(np.random.default_rng(3), shape=(5, 16, 20))
    out, motion = fc.predict_with_motion(x, 4)
    np.testing.assert_array_equal(out, fc(x, 4), strict=False)
    # 3 frames used (the last input_frames) -> 3 + 4 - 1 steps, 1 MotionGRU, encoded grid 4 x 5
    assert motion["trend"].shape == (6, 1, 18, 4, 5)
    assert set(motion) == {"trend", "filter", "transient"}
    out_b, motion_b = fc.predict_with_motion(x[None], 4)
    assert motion_b["filter"].shape == (1, 6, 1, 18, 4, 5)


def test_bf16_runs(ckpt):
    fc = ModelForecaster.from_checkpoint(ckpt, device="cpu", precision="bf16")
    x = _inputs(np.random.default_rng(4))
    ref = ModelForecaster.from_checkpoint(ckpt, device="cpu")(x, 2)
    out = fc(x, 2)
    ok = ~np.isnan(ref)
    assert np.isfinite(out[ok]).all()
    assert np.abs(out[ok] - ref[ok]).max() < 5.0  # dBZ; bf16 keeps ~3 significant digits


def test_bad_options(ckpt):
    with pytest.raises(NowcastError):
        ModelForecaster.from_checkpoint(ckpt, device="cpu", precision="fp8")
    with pytest.raises(NowcastError):
        ModelForecaster.from_checkpoint(ckpt, device="tpu")


def test_precision_uses_the_runtime_vocabulary(ckpt):
    x = _inputs(np.random.default_rng(5))
    ref = ModelForecaster.from_checkpoint(ckpt, device="cpu")(x, 2)
    for alias, name in (("off", "fp32"), ("float32", "fp32"), ("auto", "auto"), ("BF16", "bf16"),
                        ("bfloat16", "bf16")):
        assert ModelForecaster.from_checkpoint(ckpt, device="cpu", precision=alias).precision == name
    # auto is full precision on a CPU: the very same numbers as fp32
    np.testing.assert_array_equal(ModelForecaster.from_checkpoint(ckpt, device="cpu", precision="auto")(x, 2), ref)
    bf16 = ModelForecaster.from_checkpoint(ckpt, device="cpu", precision="bfloat16")(x, 2)
    assert not np.array_equal(bf16, ref, equal_nan=True)  # it really ran in bf16
    with pytest.raises(NowcastError, match="fp16 needs a CUDA GPU"):
        ModelForecaster.from_checkpoint(ckpt, device="cpu", precision="fp16")
