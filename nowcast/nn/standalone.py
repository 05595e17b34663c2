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
        if return_motion:
            raise ValueError(f"{type(self).__name__} has no MotionGRU: it has no motion states to return")
        n_out, squeeze, x5, patches, truth_p, mask = self._inputs(frames, n_out, truth, sampling_mask)
        return self._outputs(self._forecast(patches, n_out, truth_p, mask), x5, squeeze)

    def _forecast(self, patches, n_out, truth, mask):  # pragma: no cover - every subclass has one
        raise NotImplementedError
