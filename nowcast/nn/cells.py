"""Recurrent blocks: PredRNN's spatiotemporal LSTM and ConvLSTM.

Every block has the same interface so the MotionRNN framework can stack any of them:

    h, c, m, o = block(x, h, c, m, highway)

x: input from below (B, in, h, w); h, c: the block's own hidden and cell state (B, C, h, w);
m: the zigzag spatiotemporal memory (blocks without one return it unchanged);
highway: Motion Highway tensor (B, C, h, w) or None; o: the output gate (used by blocks that
add the highway outside the cell). A new backbone is one new class named in ``backbones.RECURRENT``.

The gate convolutions are fused per input group to cut the number of (small, latency-bound)
conv calls: the spatiotemporal LSTM's conv_x (in -> 7C), conv_h (C -> 4C) and conv_m (C -> 3C)
become conv over [x, h] -> 4C and conv over [x, m] -> 3C. This holds exactly the same weights
(in*7C + C*4C + C*3C per k*k), only grouped differently.
"""

from __future__ import annotations

import torch
from torch import nn

FORGET_BIAS = 1.0  # PredRNN's constant forget-gate bias: remember by default at initialisation


def _norm(channels: int, enabled: bool) -> nn.Module:
    # Layer norm over (C, H, W) that works for any frame size: GroupNorm with one group.
    return nn.GroupNorm(1, channels) if enabled else nn.Identity()


class STLSTMBlock(nn.Module):
    """PredRNN's spatiotemporal LSTM cell (bias-free convolutions), with the Motion Highway.

    H = o * tanh(W_1x1 [C, M]) + (1 - o) * highway   (the second term only when highway is given)
    """

    uses_memory = True

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, layer_norm: bool = False):
        super().__init__()
        self.hidden = hidden
        pad = kernel_size // 2
        self.conv_xh = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_xm = nn.Conv2d(in_channels + hidden, 3 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, kernel_size, padding=pad, bias=False)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)
        self.norm_xh = _norm(4 * hidden, layer_norm)
        self.norm_xm = _norm(3 * hidden, layer_norm)
        self.norm_o = _norm(hidden, layer_norm)

    def forward(self, x, h, c, m, highway=None):
        gh = self.norm_xh(self.conv_xh(torch.cat([x, h], 1)))
        gm = self.norm_xm(self.conv_xm(torch.cat([x, m], 1)))
        i, f, g, o_xh = torch.chunk(gh, 4, 1)
        i2, f2, g2 = torch.chunk(gm, 3, 1)
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(g)
        m = torch.sigmoid(f2 + FORGET_BIAS) * m + torch.sigmoid(i2) * torch.tanh(g2)
        cm = torch.cat([c, m], 1)
        o = torch.sigmoid(o_xh + self.norm_o(self.conv_o(cm)))
        h = o * torch.tanh(self.conv_last(cm))
        if highway is not None:
            h = h + (1 - o) * highway
        return h, c, m, o


class ConvLSTMBlock(nn.Module):
    """ConvLSTM cell (bias-free, one fused conv over [x, h]). No zigzag memory: m passes through.

    The Motion Highway is added by the framework outside the cell: H(l+1) += (1 - o) * H(l).
    """

    uses_memory = False

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, layer_norm: bool = False):
        super().__init__()
        self.hidden = hidden
        self.conv_xh = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm_xh = _norm(4 * hidden, layer_norm)

    def forward(self, x, h, c, m, highway=None):
        i, f, g, o = torch.chunk(self.norm_xh(self.conv_xh(torch.cat([x, h], 1))), 4, 1)
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(g)
        o = torch.sigmoid(o)
        h = o * torch.tanh(c)
        if highway is not None:
            h = h + (1 - o) * highway
        return h, c, m, o


