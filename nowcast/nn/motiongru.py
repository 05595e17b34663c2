"""MotionGRU (Wu et al., CVPR 2021) and its warp, a modulated deformable 3x3 convolution in pure torch.

Offset convention (used by the filter F, the trend D and the transient variation F'):
F has 18 channels = 9 taps x (dy, dx). Tap k (k = 0..8) is the 3x3 neighbour (ky, kx) = (k // 3 - 1, k % 3 - 1),
row-major. Channel 2k is dy (rows, positive = down), channel 2k + 1 is dx (columns, positive = right),
in pixels of the encoded grid (half the patch grid). The warp samples FROM the moved position: the output at
(y, x) reads the input at (y + ky + dy_k, x + kx + dx_k). A uniform offset (dy, dx) therefore moves the
content by (-dy, -dx) encoded pixels; one encoded pixel = patch_size * 2 radar pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .cells import gated

NEIGHBOUR = 3
TAPS = NEIGHBOUR * NEIGHBOUR
OFFSET_CHANNELS = 2 * TAPS


_GRID_CACHE: dict = {}


def _base_grid(h: int, w: int, dtype, device):
    """Normalised (align_corners=False) sampling positions of the 9 taps with zero offset, (9, h, w, 2) as
    (y, x), and the (2,) factors that turn offsets in pixels into the same units."""
    key = (h, w, dtype, str(device))
    hit = _GRID_CACHE.get(key)
    if hit is not None:
        return hit
    # constants computed once per grid size; normal tensors even when first made under inference_mode
    with torch.inference_mode(False), torch.no_grad():
        grids = _make_base_grid(h, w, dtype, device)
    if len(_GRID_CACHE) > 64:
        _GRID_CACHE.clear()
    _GRID_CACHE[key] = grids
    return grids


def _make_base_grid(h, w, dtype, device):
    k = torch.arange(TAPS, device=device)
    ky = (k // NEIGHBOUR - NEIGHBOUR // 2).to(dtype).view(TAPS, 1, 1)
    kx = (k % NEIGHBOUR - NEIGHBOUR // 2).to(dtype).view(TAPS, 1, 1)
    ys = torch.arange(h, dtype=dtype, device=device).view(1, h, 1)
    xs = torch.arange(w, dtype=dtype, device=device).view(1, 1, w)
    gy = (2 * (ys + ky) + 1) / h - 1
    gx = (2 * (xs + kx) + 1) / w - 1
    base = torch.stack([gy.expand(TAPS, h, w), gx.expand(TAPS, h, w)], dim=-1)
    return base, torch.tensor([2.0 / h, 2.0 / w], dtype=dtype, device=device)


def deform_warp(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Modulated deformable 3x3 convolution (DCNv2 semantics, stride 1, padding 1, no bias).

    x: (B, C, h, w); offset: (B, 18, h, w) as described in the module docstring; mask: (B, 9, h, w);
    weight: (C_out, C, 3, 3). Bilinear sampling, zero outside the frame.
    With zero offsets and a mask of ones this equals F.conv2d(x, weight, padding=1).
    """
    B, C, h, w = x.shape
    # positions in the wider of the two dtypes (under autocast the offsets can be float32 and x bfloat16)
    dtype = torch.promote_types(x.dtype, offset.dtype)
    base, scale = _base_grid(h, w, dtype, x.device)
    offset = offset.to(dtype)
    # (y, x) positions in two fused operations; grid_sample wants them as (x, y)
    yx = torch.addcmul(base, offset.reshape(B, TAPS, 2, h, w).permute(0, 1, 3, 4, 2), scale)
    # one grid_sample for all taps: stack them along the output height instead of repeating x in the batch
    grid = yx.flip(-1).reshape(B, TAPS * h, w, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(B, C, TAPS, h, w) * mask.reshape(B, 1, TAPS, h, w)
    # combining the taps with the 3x3 kernel is a 1x1 conv over the C*9 (channel-major, tap-minor) channels
    return F.conv2d(sampled.reshape(B, C * TAPS, h, w), weight.reshape(weight.shape[0], C * TAPS, 1, 1))


class MotionGRU(nn.Module):
    """MotionGRU between two recurrent blocks with hidden size C (C divisible by 4 is not required).

    forward(h, f_prev, d_prev) -> (out, f, d, f_transient); states f, d: (B, 18, ceil(H/2), ceil(W/2)).
    """

    def __init__(
        self,
        hidden: int,
        kernel_size: int = 5,
        alpha: float = 0.5,
        trend: bool = True,
        transient: bool = True,
    ):
        super().__init__()
        ce = hidden // 4
        pad = kernel_size // 2
        self.alpha = float(alpha)
        self.trend = trend
        self.transient = transient
        self.enc = nn.Conv2d(hidden, ce, kernel_size, stride=2, padding=pad)
        if transient:
            # update and reset gates fused in one conv (same weights as two separate convs)
            self.conv_ur = nn.Conv2d(ce + OFFSET_CHANNELS, 2 * OFFSET_CHANNELS, 3, padding=1)
            self.conv_z = nn.Conv2d(ce + OFFSET_CHANNELS, OFFSET_CHANNELS, 3, padding=1)
        else:
            self.conv_z = nn.Conv2d(ce, OFFSET_CHANNELS, 3, padding=1)
        self.conv_mask = nn.Conv2d(ce, TAPS, 3, padding=1)
        self.warp_weight = nn.Parameter(torch.empty(ce, ce, NEIGHBOUR, NEIGHBOUR))
        nn.init.kaiming_uniform_(self.warp_weight, a=math.sqrt(5))  # as nn.Conv2d does
        self.dec = nn.ConvTranspose2d(ce, hidden, 4, stride=2, padding=1)
        self.gate = nn.Conv2d(2 * hidden, hidden, kernel_size, padding=pad)
        # zero filter and constant mask at initialisation: the warp starts as a plain convolution
        for conv in (getattr(self, "conv_ur", None), self.conv_z, self.conv_mask):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, h, f_prev, d_prev):
        e = self.enc(h)
        if self.transient:
            u, r = torch.sigmoid(self.conv_ur(torch.cat([e, f_prev], 1))).chunk(2, 1)
            z = torch.tanh(self.conv_z(torch.cat([e, r * f_prev], 1)))
            f_tr = gated(u, z, f_prev)
        else:
            f_tr = torch.tanh(self.conv_z(e))
        if self.trend:
            d = gated(self.alpha, f_prev, d_prev)
            f = f_tr + d
        else:
            d = d_prev
            f = f_tr
        m = torch.sigmoid(self.conv_mask(e))
        dec = self.dec(deform_warp(e, f, m, self.warp_weight))
        if dec.shape[-2:] != h.shape[-2:]:  # odd patch grids: the transposed conv gives one row/col more
            dec = dec[..., : h.shape[-2], : h.shape[-1]]
        g = torch.sigmoid(self.gate(torch.cat([dec, h], 1)))
        return gated(g, dec, h), f, d, f_tr
