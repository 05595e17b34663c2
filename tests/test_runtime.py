"""One device rule and one precision vocabulary for training and forecasting."""

from __future__ import annotations

import pytest
import torch

from nowcast.errors import NowcastError
from nowcast.runtime import autocast, autocast_dtype, normalize_precision, precision_name, resolve_device


def test_precision_names_and_aliases():
    assert [normalize_precision(p) for p in ("auto", "FP32", "off", "bfloat16", "bf16", "fp16", None)] == \
        ["auto", "fp32", "fp32", "bf16", "bf16", "fp16", "fp32"]
    with pytest.raises(NowcastError, match="unknown precision 'int8'"):
        normalize_precision("int8")


def test_cpu_precision_rules():
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None  # auto stays full precision on a CPU
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(NowcastError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


def test_autocast_runs_a_matmul_in_bf16_on_cpu_and_fp32_otherwise():
    a = torch.randn(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(NowcastError, match="unknown device"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(NowcastError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_forecast_and_checkpoint_share_the_rule():
    import nowcast.checkpoint
    import nowcast.forecast

    assert nowcast.forecast.resolve_device is resolve_device
    assert nowcast.checkpoint.resolve_device is resolve_device


def test_native_bf16_read_from_the_cpu_flags():
    from nowcast.runtime import cpu_has_native_bf16

    assert cpu_has_native_bf16("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n") is True
    assert cpu_has_native_bf16("flags\t\t: fpu sse avx2 amx_bf16 amx_tile\n") is True
    assert cpu_has_native_bf16("flags : fpu sse avx2 avx512f\n") is False
    assert cpu_has_native_bf16("model name : something\n") is None
    assert cpu_has_native_bf16() in (True, False, None)  # this machine's, whatever it is


def test_training_auto_picks_bf16_only_on_a_cpu_with_native_bf16():
    from nowcast.runtime import training_autocast_dtype

    cpu = torch.device("cpu")
    assert training_autocast_dtype("auto", cpu, native_bf16=True) is torch.bfloat16
    assert training_autocast_dtype("auto", cpu, native_bf16=False) is None
    assert training_autocast_dtype("auto", cpu, native_bf16=None) is None  # unknown CPU: the safe choice
    # an explicit choice is kept, whatever the CPU
    assert training_autocast_dtype("bf16", cpu, native_bf16=False) is torch.bfloat16
    assert training_autocast_dtype("fp32", cpu, native_bf16=True) is None


def test_default_preset_trains_at_auto_precision():
    from nowcast.train.config import preset

    assert preset("default").run.precision == "auto"
