"""Forecasts from a trained network, behind the same contract as the other forecast methods."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .errors import NowcastError
from .methods import ForecastMethod, _as_batch
from .units import dbz_to_unit, unit_to_dbz


def resolve_device(device="auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise NowcastError(f"unknown device {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NowcastError(f"device {device!r} requested but CUDA is not available")
    return dev


def name_clashing_models(forecasters, sources) -> None:
    """Rename models whose names clash (two runs' ``best.safetensors``) after the path they came from.

    Score tables and JSON are keyed by method name, so each model needs its own.
    """
    names = [f.name for f in forecasters]
    for f, source in zip(forecasters, sources):
        if names.count(f.name) > 1:
            f.name = str(source)


class ModelForecaster(ForecastMethod):
    """A MotionRNN checkpoint as a forecast method: dBZ in, dBZ out (NaN regions kept, floored).

    The network reads the last ``input_frames`` frames (from the checkpoint's config) on the
    [0, 1] scale of ``units.dbz_to_unit`` (no data counts as the floor), in batches of ``batch_size``.
    """

    def __init__(self, model, info: dict, device=None, batch_size: int = 8, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise NowcastError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if batch_size < 1:
            raise NowcastError(f"batch_size must be at least 1, got {batch_size}")
        self.info = info
        self.config = info["config"]
        self.name = info.get("name", "model")
        self.input_frames = int(self.config.input_frames)
        self.device = next(model.parameters()).device if device is None else resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.precision = precision
        self._capture = None
        # radar pixels per encoded-grid pixel of the motion offsets (patch size x encoder stride)
        self.motion_scale = int(self.config.patch_size) * 2

    @classmethod
    def from_checkpoint(cls, name_or_path, device="auto", **kwargs) -> "ModelForecaster":
        from .checkpoint import load_model

        dev = resolve_device(device)
        model, info = load_model(name_or_path, device=dev)
        return cls(model, info, device=dev, **kwargs)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forecast_batch(self, batch: np.ndarray, n_out: int) -> np.ndarray:
        x = dbz_to_unit(batch[:, -self.input_frames :])
        outs = []
        want_motion = self._capture is not None
        with torch.inference_mode(), self._autocast():
            for i in range(0, x.shape[0], self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
                res = self.model(xb, n_out, return_motion=want_motion)
                if want_motion:
                    res, motion = res
                    self._capture.append({k: v.float().cpu().numpy() for k, v in motion.items()})
                outs.append(res.float().clamp_(0.0, 1.0).cpu().numpy())
        return unit_to_dbz(np.concatenate(outs, 0))

    def predict_with_motion(self, inputs, n_out: int = 10):
        """Forecasts (as ``self(inputs, n_out)``) and the MotionGRU states as numpy arrays.

        motion: {"trend", "filter", "transient"} each (B, steps, n_gru, 18, h, w), without B for a
        single (T, H, W) input; layout and sign convention as documented in ``nowcast.nn.MotionRNN``.
        """
        _, single = _as_batch(inputs)
        self._capture = []
        try:
            out = self(inputs, n_out)
            captured = self._capture
        finally:
            self._capture = None
        motion = {k: np.concatenate([c[k] for c in captured], 0) for k in ("trend", "filter", "transient")}
        if single:
            motion = {k: v[0] for k, v in motion.items()}
        return out, motion
