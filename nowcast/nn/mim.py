"""MIM, Memory In Memory (Wang et al., CVPR 2019), as a backbone of the MotionRNN framework.

Layer 1 is PredRNN's spatiotemporal LSTM (``cells.STLSTMBlock``); every higher layer is a MIM block, which
replaces the forget gate of the temporal cell by two cascaded recurrent modules. With x the block's input
from below (the layer below's hidden state, after its MotionGRU when motion is on), H and C the block's
hidden state and cell, M the zigzag memory, and D = x(t) - x(t-1) the change of its input between steps
(zero at the first step):

    N, N_c = MIM-N(D; N, N_c)          non-stationary module: an LSTM over the differences
    T, S   = MIM-S(N; C(t-1), S)       stationary module: reads N, gated by the previous cell
    C = T + sigmoid(i_x + i_h) * tanh(g_x + g_h)
    M = sigmoid(f_x + f_m + 1) * M + sigmoid(i_x + i_m) * tanh(g_x + g_m)
    H = o * tanh(W_1x1 [C, M]) + (1 - o) * highway,    o = sigmoid(o_x + o_h + o_m)

MIM-N and MIM-S are the same cell (``MIMCell``): an LSTM with forget bias 1 and peephole weights on its own
cell, reading an input and a recurrent state.

The structure follows OpenSTL's MIM (commit c74deb5d, itself after the authors' code) so that the parameter
counts agree: bias-free convolutions, the input's i and g gates shared by the temporal and the spatial
update, no cell term in the output gate. Differences, on purpose:
- the peephole weights are one per channel, not a (C, h, w) map tied to one grid size: the network runs on
  any frame size and trains on random crops, where a position inside the crop means nothing;
- OpenSTL's MIM-N carries a 1x1 ``conv_last`` it never uses: left out;
- MIM-S's cell S is part of the block's state, zeroed for every sequence (OpenSTL keeps it on the module
  across batches);
- every MIM block's MIM-N reads the change of its own input, as the paper's equations put it (the authors'
  code feeds a block's MIM-N with the MIM-N output of the block below, from the third layer up).
Each MIM-N/MIM-S cell fuses its two input convolutions into one over [input, state]: the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .cells import FORGET_BIAS, RecurrentBlock, STLSTMBlock, _norm, with_highway


class MIMCell(nn.Module):
    """The LSTM inside a MIM block (MIM-N and MIM-S): ``h, c = cell(x, h, c)``, with peepholes on c."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, layer_norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = _norm(4 * hidden, layer_norm)
        # zero at the start (as OpenSTL): the peepholes are learned corrections
        self.peep_if = nn.Parameter(torch.zeros(2 * hidden, 1, 1))
        self.peep_o = nn.Parameter(torch.zeros(hidden, 1, 1))

    def forward(self, x, h, c):
        i, g, f, o = torch.chunk(self.norm(self.conv(torch.cat([x, h], 1))), 4, 1)
        peep_i, peep_f = torch.chunk(self.peep_if, 2, 0)
        i = torch.sigmoid(i + peep_i * c)
        f = torch.sigmoid(f + peep_f * c + FORGET_BIAS)
        c = f * c + i * torch.tanh(g)
        h = torch.sigmoid(o + self.peep_o * c) * torch.tanh(c)
        return h, c


class MIMBlock(RecurrentBlock):
    """A MIM block (layers 2 and up of a MIM stack; ``for_layer`` puts an ST-LSTM at layer 1).

    State: (H, C, previous input or None, N, N_c, S).
    """

    uses_memory = True

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, layer_norm: bool = False):
        super().__init__(hidden)
        pad = kernel_size // 2
        self.conv_x = nn.Conv2d(in_channels, 4 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_h = nn.Conv2d(hidden, 3 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_m = nn.Conv2d(hidden, 4 * hidden, kernel_size, padding=pad, bias=False)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)
        self.norm_x = _norm(4 * hidden, layer_norm)
        self.norm_h = _norm(3 * hidden, layer_norm)
        self.norm_m = _norm(4 * hidden, layer_norm)
        self.non_stationary = MIMCell(in_channels, hidden, kernel_size, layer_norm)
        self.stationary = MIMCell(hidden, hidden, kernel_size, layer_norm)

    @classmethod
    def for_layer(cls, layer: int, in_channels: int, hidden: int, kernel_size: int, layer_norm: bool):
        if layer == 0:
            return STLSTMBlock(in_channels, hidden, kernel_size, layer_norm)
        return cls(in_channels, hidden, kernel_size, layer_norm)

    def init_state(self, zeros) -> tuple:
        c = self.hidden
        return zeros(c), zeros(c), None, zeros(c), zeros(c), zeros(c)

    def init_memory(self, zeros):
        return zeros(self.hidden)

    def forward(self, x, state, m, highway=None):
        h, c, prev, n, n_c, s = state
        # no difference before a second input has been seen (as the authors' code: MIM-N starts at step 2)
        diff = x - prev if prev is not None else torch.zeros_like(x)
        n, n_c = self.non_stationary(diff, n, n_c)
        t, s = self.stationary(n, c, s)
        i_x, g_x, f_x, o_x = torch.chunk(self.norm_x(self.conv_x(x)), 4, 1)
        i_h, g_h, o_h = torch.chunk(self.norm_h(self.conv_h(h)), 3, 1)
        i_m, g_m, f_m, o_m = torch.chunk(self.norm_m(self.conv_m(m)), 4, 1)
        c = t + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        m = torch.sigmoid(f_x + f_m + FORGET_BIAS) * m + torch.sigmoid(i_x + i_m) * torch.tanh(g_x + g_m)
        o = torch.sigmoid(o_x + o_h + o_m)
        h = with_highway(o, torch.tanh(self.conv_last(torch.cat([c, m], 1))), highway)
        return h, (h, c, x, n, n_c, s), m
