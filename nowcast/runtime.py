"""Where and in what arithmetic the networks run: the device, and mixed precision with one vocabulary.

Precision names (the same for training and forecasting; the vocabulary lives in ``nowcast.options``, which needs
no torch):

- ``fp32``: full precision (``off``, ``float32`` and ``none`` mean the same).
- ``bf16``: autocast to bfloat16; on a GPU that has it and on a CPU (fast where the CPU has AVX512-BF16
  or AMX). Master weights stay float32 and no gradient scaling is needed (bf16 has float32's range).
- ``fp16``: autocast to float16, on a GPU only; training pairs it with a gradient scaler.
- ``auto``: bf16 on a GPU that supports it, else fp16 on a GPU; fp32 on a CPU.
"""

from __future__ import annotations

import contextlib

import torch

from .options import PRECISIONS, OptionError, normalize_precision  # noqa: F401  (the vocabulary, re-exported)


def resolve_device(device="auto") -> torch.device:
    """``auto`` (CUDA when torch sees a GPU), ``cpu``, ``cuda``, ``cuda:N`` or a torch.device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"unknown {{device}} {device!r}; use auto, cpu or cuda", "device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"{{device}} {device!r} asked for, but torch sees no CUDA GPU", "device")
    return dev


def autocast_dtype(precision, device) -> torch.dtype | None:
    """The autocast dtype for this precision on this device, or None for full precision."""
    name = normalize_precision(precision)
    dev = torch.device(device)
    if name == "fp32":
        return None
    if name == "auto":
        if dev.type != "cuda":
            return None  # bf16 on CPU is opt-in: it changes the numbers, and old CPUs emulate it slowly
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "fp16" and dev.type != "cuda":
        raise OptionError("{precision} fp16 needs a CUDA GPU; on a CPU use bf16 or fp32", "precision")
    return torch.bfloat16 if name == "bf16" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """fp32 | bf16 | fp16 for an autocast dtype (None = fp32)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast_active(device_type: str) -> bool:
    """Whether an autocast region is open for this device type here."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 asks per device
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def training_autocast_dtype(precision, device, native_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of a training run: as ``autocast_dtype``, except that ``auto`` on a CPU trains in bf16
    where the CPU computes bf16 natively (about 2.5x faster than fp32 there) and in fp32 elsewhere (emulated bf16
    was about 13x slower than fp32). ``native_bf16``: the CPU's answer, read from /proc/cpuinfo when None."""
    dev = torch.device(device)
    if normalize_precision(precision) == "auto" and dev.type == "cpu":
        native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
        return torch.bfloat16 if native else None
    return autocast_dtype(precision, dev)


def autocast(precision, device):
    """A context manager running its block in ``precision`` on ``device`` (a no-op for fp32)."""
    return autocast_to(autocast_dtype(precision, device), device)


def autocast_to(dtype: torch.dtype | None, device):
    """A context manager running its block under autocast to ``dtype`` on ``device`` (a no-op for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags); None where that
    cannot be told (no /proc/cpuinfo). Without it oneDNN emulates bf16 and a bf16 training step is slow
    (benchmarks/RESULTS.md, issue 21: 47 s per iteration on a 2-core VM without AVX-512)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[-1].split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})

