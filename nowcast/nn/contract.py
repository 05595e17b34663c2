"""The call contract every network here follows, and the plumbing that implements it once.

``model(frames, n_out=None, truth=None, sampling_mask=None, return_motion=False)``: frames on the [0, 1]
scale shaped (B, T, H, W) (or (B, T, C, H, W) when in_channels > 1) -> (B, n_out, H, W), not clamped.
Any H, W: zero padded (the floor) to ``pad_multiple`` and cut into patches (pixel_unshuffle); ``truth``
(B, >= n_out - 1, H, W) and ``sampling_mask`` (B, >= n_out - 1) for scheduled sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import autocast_active
from .config import ModelConfig


class FrameNetwork(nn.Module):
    """Shapes, padding, patches, truth checks and the channels-last switch, shared by MotionRNN and the
    stand-alone networks."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.channels_last = False

    def forward(self, frames, n_out=None, truth=None, sampling_mask=None, return_motion: bool = False):
        args = (frames, n_out, truth, sampling_mask, return_motion)
        if torch.is_inference_mode_enabled() and autocast_active(frames.device.type):
            # Autocast keeps its low-precision copies of the weights for the whole call only outside inference
            # mode; inside it, every convolution of every step casts its weights again (a fifth of a bf16
            # forecast at 64x64). no_grad gives the same numbers without that.
            with torch.inference_mode(False), torch.no_grad():
                return self._forward(*args)
        return self._forward(*args)

    def _forward(self, frames, n_out, truth, sampling_mask, return_motion):  # pragma: no cover - subclasses
        raise NotImplementedError

    @property
    def pad_multiple(self) -> int:
        """Frames are zero padded to a multiple of this (the patch size unless a subclass needs more)."""
        return self.config.patch_size

    @property
    def patch_channels(self) -> int:
        return self.config.in_channels * self.config.patch_size ** 2

    def use_channels_last(self, enabled: bool = True):
        """Keep weights and activations in NHWC, which oneDNN's CPU convolutions prefer (a speed switch only).

        Under bf16 autocast on a CPU it about halves a MotionRNN forecast's time (64x64 frames,
        benchmarks/model_speed.json); in fp32 it gains nothing measurable and changes the last bits."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                mod.weight.data = mod.weight.data.contiguous(memory_format=fmt)
        self.channels_last = bool(enabled)
        return self

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _to_5d(self, x: torch.Tensor, what: str) -> torch.Tensor:
        c = self.config.in_channels
        if x.dim() == 4 and c == 1:
            return x.unsqueeze(2)
        if x.dim() == 5 and x.shape[2] == c:
            return x
        raise ValueError(f"model {what} must be shaped (B, T, H, W) or (B, T, {c}, H, W), got {tuple(x.shape)}")

    def _patches(self, x5: torch.Tensor) -> torch.Tensor:
        B, T = x5.shape[:2]
        m, p = self.pad_multiple, self.config.patch_size
        x = x5.reshape(B * T, *x5.shape[2:])
        H, W = x.shape[-2:]
        if (-H) % m or (-W) % m:
            x = F.pad(x, (0, (-W) % m, 0, (-H) % m))  # zero = no echo (the floor)
        x = F.pixel_unshuffle(x, p) if p > 1 else x
        return x.reshape(B, T, *x.shape[1:])

    def _frames_back(self, out: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, n_out, C p p, h, w) patches -> (B, n_out, C, H, W) frames, cropped to the input grid."""
        B, n_out, p = out.shape[0], out.shape[1], self.config.patch_size
        out = out.reshape(B * n_out, *out.shape[2:])
        out = F.pixel_shuffle(out, p) if p > 1 else out
        return out[..., :H, :W].reshape(B, n_out, self.config.in_channels, H, W)

    def _inputs(self, frames, n_out, truth, sampling_mask):
        """The checked call: (n_out, squeeze, frames as (B, T, C, H, W), their patches, truth patches, mask)."""
        n_out = self.config.output_frames if n_out is None else int(n_out)
        if n_out < 1:
            raise ValueError(f"n_out must be at least 1, got {n_out}")
        squeeze = frames.dim() == 4 and self.config.in_channels == 1
        x5 = self._to_5d(frames, "frames")
        patches = self._patches(x5)
        truth_p, sampling_mask = self._teacher(truth, sampling_mask, x5, n_out, patches)
        return n_out, squeeze, x5, patches, truth_p, sampling_mask

    def _outputs(self, out: torch.Tensor, x5: torch.Tensor, squeeze: bool) -> torch.Tensor:
        """(B, n_out, C p p, h, w) patches -> the forecast frames on the input grid, shaped as the input."""
        out = self._frames_back(out, x5.shape[-2], x5.shape[-1])
        return out[:, :, 0] if squeeze else out

    def _teacher(self, truth, sampling_mask, frames5: torch.Tensor, n_out: int, patches: torch.Tensor):
        """Truth as patches and the mask, checked as MotionRNN checks them (None, None without truth)."""
        if truth is None:
            return None, None
        B, H, W = frames5.shape[0], frames5.shape[-2], frames5.shape[-1]
        t5 = self._to_5d(truth, "truth")
        if t5.shape[0] != B or t5.shape[1] < n_out - 1 or t5.shape[-2:] != (H, W):
            raise ValueError(f"truth shaped {tuple(truth.shape)} does not fit frames {tuple(frames5.shape)}")
        if sampling_mask is not None:
            sampling_mask = sampling_mask.to(dtype=patches.dtype, device=patches.device)
            if sampling_mask.shape[0] != B or sampling_mask.shape[1] < n_out - 1:
                raise ValueError(f"sampling_mask must be (B, n_out - 1), got {tuple(sampling_mask.shape)}")
        return self._patches(t5), sampling_mask
