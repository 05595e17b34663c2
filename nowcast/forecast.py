"""Forecasts from a trained network, behind the same contract as the other forecast methods."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .errors import NowcastError
from .methods import ForecastMethod, _as_batch
from .motion import displacements, estimate_motion, inside
from .runtime import resolve_device  # noqa: F401  (re-exported for older callers)
from .units import dbz_to_unit, unit_to_dbz



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

    @property
    def lagrangian(self) -> bool:
        return getattr(self.config, "frame", "eulerian") == "lagrangian"

    def motion_field(self, inputs: np.ndarray) -> np.ndarray:
        """The optical flow a Lagrangian model advects with, for (T, H, W) dBZ inputs: (2, H, W).

        ``estimate_motion`` remembers recent fields by content, so methods scored on the same window share one.
        """
        return estimate_motion(np.asarray(inputs[-self.input_frames :], dtype=np.float32))

    def _forecast_batch(self, batch: np.ndarray, n_out: int) -> np.ndarray:
        x = dbz_to_unit(batch[:, -self.input_frames :])
        velocity = np.stack([self.motion_field(b) for b in batch]) if self.lagrangian else None
        outs, valid = [], []
        want_motion = self._capture is not None
        with torch.inference_mode(), self._autocast():
            for i in range(0, x.shape[0], self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
                extra = {}
                if velocity is not None:
                    extra["motion"] = torch.from_numpy(velocity[i : i + self.batch_size]).to(self.device)
                res = self.model(xb, n_out, return_motion=want_motion, **extra)
                if want_motion:
                    res, motion = res
                    captured = {k: v.float().cpu().numpy() for k, v in motion.items()}
                    if velocity is not None:
                        captured["flow"] = velocity[i : i + self.batch_size]
                    self._capture.append(captured)
                outs.append(res.float().clamp_(0.0, 1.0).cpu().numpy())
                if velocity is not None:
                    valid.append(inside(displacements(extra["motion"].float(), n_out)).cpu().numpy())
        out = unit_to_dbz(np.concatenate(outs, 0))
        if valid:  # trajectories from beyond the grid have no source: no data, as in extrapolation
            out[~np.concatenate(valid, 0)] = np.nan
        return out

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
        keys = ("trend", "filter", "transient") + (("flow",) if self.lagrangian else ())
        motion = {k: np.concatenate([c[k] for c in captured], 0) for k in keys}
        if single:
            motion = {k: v[0] for k, v in motion.items()}
        return out, motion
