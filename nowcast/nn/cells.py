"""Recurrent blocks: PredRNN's spatiotemporal LSTM and ConvLSTM, and the protocol every block follows.

The MotionRNN framework (``motionrnn.py``) stacks blocks of one backbone and owns everything between
them (the MotionGRUs, the Motion Highway, the patches). A block only keeps its own recurrent state:

    block = Cls.for_layer(layer, in_channels, hidden, kernel_size, layer_norm)
    state = block.init_state(zeros)        # zeros(c) -> (B, c, h, w) zeros on the patch grid
    m     = stack[0].init_memory(zeros)    # the zigzag memory, or None for blocks without one
    out, state, m = block(x, state, m, highway)

x: input from below (B, in_channels, h, w); out: what the block passes up, to the MotionGRU, to the
Motion Highway of the next layer and to the output layer (B, block.out_channels, h, w). ``state`` is an
opaque tuple only the block reads (PredRNN: (H, C); MIM and E3D-LSTM keep more). m, the spatiotemporal
memory, flows up through the layers and from the top layer to layer 1 of the next step; blocks without
one pass it through. highway: the Motion Highway tensor (B, out_channels, h, w) or None.

``for_layer`` lets a backbone put a different block at some layers (MIM: an ST-LSTM at layer 1).
A new backbone is one module with a block class named in ``backbones.RECURRENT``.

The gate convolutions are fused per input group to cut the number of (small, latency-bound)
conv calls: the spatiotemporal LSTM's conv_x (in -> 7C), conv_h (C -> 4C) and conv_m (C -> 3C)
become conv over [x, h] -> 4C and conv over [x, m] -> 3C. This holds exactly the same weights
(in*7C + C*4C + C*3C per k*k), only grouped differently.
"""

from __future__ import annotations

import torch
from torch import nn

FORGET_BIAS = 1.0  # PredRNN's constant forget-gate bias: remember by default at initialisation


def gated(weight: torch.Tensor, new: torch.Tensor, old) -> torch.Tensor:
    """weight * new + (1 - weight) * old, as one fused lerp where the dtypes agree (they can differ under
    autocast: layer norms give float32); a recurrent step calls this a dozen times, so it saves small ops."""
    if isinstance(weight, torch.Tensor) and not (weight.dtype == new.dtype == old.dtype):
        return weight * new + (1 - weight) * old
    if new.dtype != old.dtype:
        return old + weight * (new - old)
    return torch.lerp(old, new, weight)


def with_highway(o: torch.Tensor, candidate: torch.Tensor, highway) -> torch.Tensor:
    """The output gate with the Motion Highway: o * candidate + (1 - o) * highway (just o * candidate without)."""
    return o * candidate if highway is None else gated(o, candidate, highway)


def _norm(channels: int, enabled: bool) -> nn.Module:
    # Layer norm over (C, H, W) that works for any frame size: GroupNorm with one group.
    return nn.GroupNorm(1, channels) if enabled else nn.Identity()


class RecurrentBlock(nn.Module):
    """Base of the blocks MotionRNN stacks: defaults for a block whose state is (H, C), no memory."""

    uses_memory = False  # True: a zigzag memory flows through the stack (one hidden size for all layers)

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden

    @classmethod
    def for_layer(cls, layer: int, in_channels: int, hidden: int, kernel_size: int, layer_norm: bool):
        """The block at ``layer`` (0 = bottom) of a stack of this backbone."""
        return cls(in_channels, hidden, kernel_size, layer_norm)

    @property
    def out_channels(self) -> int:
        return self.hidden

    def init_state(self, zeros) -> tuple:
        return zeros(self.hidden), zeros(self.hidden)

    def init_memory(self, zeros):
        """The zigzag memory at the first step (asked of the bottom block); None when there is none."""
        return None


class STLSTMBlock(RecurrentBlock):
    """PredRNN's spatiotemporal LSTM cell (bias-free convolutions), with the Motion Highway.

    H = o * tanh(W_1x1 [C, M]) + (1 - o) * highway   (the second term only when highway is given)
    """

    uses_memory = True

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, layer_norm: bool = False):
        super().__init__(hidden)
        pad = kernel_size // 2
        self.conv_xh = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_xm = nn.Conv2d(in_channels + hidden, 3 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_o = nn.Conv2d(2 * hidden, hidden, kernel_size, padding=pad, bias=False)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)
        self.norm_xh = _norm(4 * hidden, layer_norm)
        self.norm_xm = _norm(3 * hidden, layer_norm)
        self.norm_o = _norm(hidden, layer_norm)

    def init_memory(self, zeros):
        return zeros(self.hidden)

    def forward(self, x, state, m, highway=None):
        h, c = state
        gh = self.norm_xh(self.conv_xh(torch.cat([x, h], 1)))
        gm = self.norm_xm(self.conv_xm(torch.cat([x, m], 1)))
        i, f, g, o_xh = torch.chunk(gh, 4, 1)
        i2, f2, g2 = torch.chunk(gm, 3, 1)
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(g)
        m = torch.sigmoid(f2 + FORGET_BIAS) * m + torch.sigmoid(i2) * torch.tanh(g2)
        cm = torch.cat([c, m], 1)
        o = torch.sigmoid(o_xh + self.norm_o(self.conv_o(cm)))
        h = with_highway(o, torch.tanh(self.conv_last(cm)), highway)
        return h, (h, c), m


class ConvLSTMBlock(RecurrentBlock):
    """ConvLSTM cell (bias-free, one fused conv over [x, h]). No zigzag memory: m passes through.

    The Motion Highway enters as for PredRNN, through the output gate: H = o * tanh(C) + (1 - o) * highway.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, layer_norm: bool = False):
        super().__init__(hidden)
        self.conv_xh = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm_xh = _norm(4 * hidden, layer_norm)

    def forward(self, x, state, m, highway=None):
        h, c = state
        i, f, g, o = torch.chunk(self.norm_xh(self.conv_xh(torch.cat([x, h], 1))), 4, 1)
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(g)
        o = torch.sigmoid(o)
        h = with_highway(o, torch.tanh(c), highway)
        return h, (h, c), m
