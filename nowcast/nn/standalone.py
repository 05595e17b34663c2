"""What the stand-alone networks (TrajGRU, Conv-TT-LSTM) share to follow MotionRNN's call contract.

``model(frames, n_out=None, truth=None, sampling_mask=None, return_motion=False)``: frames on the [0, 1]
scale shaped (B, T, H, W) (or (B, T, C, H, W) when in_channels > 1) -> (B, n_out, H, W), not clamped.
Any H, W: zero padded (the floor) to a multiple of the patch size, cut into patches (pixel_unshuffle),
and cropped back. ``truth`` (B, >= n_out - 1, H, W) and ``sampling_mask`` (B, >= n_out - 1) are checked
as MotionRNN checks them; a network uses them if it reads its own forecasts. These networks have no
MotionGRU, so ``return_motion=True`` is a ValueError.

A subclass builds its layers in ``__init__`` and implements ``_forecast(patches, n_out, truth, mask)`` on
patches: (B, T, C, h, w) in, (B, n_out, C, h, w) out.
"""

from __future__ import annotations

from .contract import FrameNetwork


class StandaloneNetwork(FrameNetwork):
    """A subclass's ``_forecast`` on patches, inside the shared call contract."""

    def _forward(self, frames, n_out, truth, sampling_mask, return_motion):
        cfg = self.config
        if return_motion:
            raise ValueError(f"{type(self).__name__} has no MotionGRU: it has no motion states to return")
        n_out = cfg.output_frames if n_out is None else int(n_out)
        if n_out < 1:
            raise ValueError(f"n_out must be at least 1, got {n_out}")
        squeeze = frames.dim() == 4 and cfg.in_channels == 1
        x5 = self._to_5d(frames, "frames")
        B, _, _, H, W = x5.shape
        patches = self._patches(x5)
        truth_p, mask = self._teacher(truth, sampling_mask, x5, n_out, patches)
        out = self._forecast(patches, n_out, truth_p, mask)  # (B, n_out, C p p, h, w)
        out = self._frames_back(out, H, W)
        return out[:, :, 0] if squeeze else out

    def _forecast(self, patches, n_out, truth, mask):  # pragma: no cover - every subclass has one
        raise NotImplementedError
