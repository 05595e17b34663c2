"""E3D-LSTM, Eidetic 3D LSTM (Wang et al., ICLR 2019), as a backbone of the MotionRNN framework.

Every state is a short clip: (B, C, WINDOW, h, w), and every gate a 3D convolution with a (WINDOW, k, k)
kernel. Layer 1 reads the window of its last WINDOW input frames; a higher layer reads the clip of hidden
states of the layer below. With X the input clip, H, C the block's hidden state and cell, M the zigzag
memory and C(t-WINDOW .. t-1) the block's cells of the last WINDOW steps:

    R = sigmoid(W_xr * X + W_hr * H)                                  recall gate
    C = sigmoid(i) * tanh(g) + LayerNorm(C + RECALL(R, C(t-WINDOW .. t-1)))
    M = sigmoid(f' + f_m + 1) * tanh(m_m) + sigmoid(i' + i_m) * tanh(g' + g_m)
    H = o * tanh(W_1x1x1 [C, M]) + (1 - o) * highway,   o = sigmoid(o_x + o_h + W_o * [C, M])

RECALL is attention: every slot of R asks the remembered cells at the same pixel (WINDOW steps x WINDOW
slots) with scaled dot products over the channels, and gets their softmax-weighted mean. The M update uses
tanh of the memory's own convolution (m_m) as the authors' code does.

Between blocks the framework sees a clip folded into channels, (B, C * WINDOW, h, w) (channel c * WINDOW + s
is channel c of slot s): the MotionGRU warps the whole clip with one motion field, the Motion Highway adds
clip to clip, and the output layer's 1x1 convolution over the C * WINDOW channels is OpenSTL's
(WINDOW, 1, 1) output convolution.

The structure follows OpenSTL's E3DLSTM (commit c74deb5d: window 2, (2, 5, 5) kernels, bias-free
convolutions, layer norm on the cell) so that the parameter counts agree, except that:
- the temporal kernel pads causally (one empty slot before the clip) so the clip keeps its length, where
  OpenSTL convolves to one slot and repeats it;
- the layer norm on the cell has one scale and shift per channel (GroupNorm with one group), not a
  (C, WINDOW, h, w) map tied to one grid size: the network runs on any frame size;
- the recall attends per pixel over the remembered steps, so its cost grows linearly with the area
  (attention over all positions of a 256 x 256 domain's history would not fit);
- the block hands the new memory M on (OpenSTL returns the old one, so its M never changes), and its output
  gate is sigmoid(...) as in the paper (OpenSTL: sigmoid(tanh(...))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cells import FORGET_BIAS, RecurrentBlock, _norm, with_highway

WINDOW = 2  # slots in a clip, the temporal kernel size, and the past steps the recall gate remembers


def _causal(x: torch.Tensor) -> torch.Tensor:
    """Pad a clip in front so a WINDOW-long temporal kernel keeps its length and sees no later slot."""
    return F.pad(x, (0, 0, 0, 0, WINDOW - 1, 0))


def _clip(x: torch.Tensor, slots: int = WINDOW) -> torch.Tensor:
    """(B, C * slots, h, w) -> (B, C, slots, h, w)."""
    B, CS, h, w = x.shape
    return x.reshape(B, CS // slots, slots, h, w)


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(B, C, WINDOW, h, w) -> (B, C * WINDOW, h, w)."""
    B, C, T, h, w = x.shape
    return x.reshape(B, C * T, h, w)


def recall(query: torch.Tensor, memories: torch.Tensor) -> torch.Tensor:
    """Attention of each query slot over the memory slots at the same pixel.

    query (B, C, Q, h, w), memories (B, C, K, h, w) -> (B, C, Q, h, w).
    """
    # scaled as in transformers: unscaled sums over 64 channels would saturate the softmax
    scores = torch.einsum("bcqyx,bckyx->bqkyx", query, memories) * query.shape[1] ** -0.5
    return torch.einsum("bqkyx,bckyx->bcqyx", scores.softmax(2), memories)


class E3DBlock(RecurrentBlock):
    """An Eidetic 3D LSTM block. State: (H, C, remembered cells (B, C, WINDOW * WINDOW, h, w), past inputs).

    ``clip_input``: the input is a folded clip from the block below; otherwise single frames, of which the
    block keeps the last WINDOW - 1 to make its clip (zeros before the first).
    """

    uses_memory = True

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 5, layer_norm: bool = False,
                 clip_input: bool = False):
        super().__init__(hidden)
        if clip_input and in_channels % WINDOW:
            raise ValueError(f"a clip input needs channels divisible by {WINDOW}, got {in_channels}")
        self.clip_input = clip_input
        cx = in_channels // WINDOW if clip_input else in_channels
        self.in_channels = cx
        kernel = (WINDOW, kernel_size, kernel_size)
        pad = (0, kernel_size // 2, kernel_size // 2)
        # X's gates: (i, g, r, o) summed with H's, and (i', g', f') with M's; the same weights as OpenSTL's
        # conv_x (7C) and conv_h (4C), the first group fused into one convolution over [X, H]
        self.conv_xh = nn.Conv3d(cx + hidden, 4 * hidden, kernel, padding=pad, bias=False)
        self.conv_x = nn.Conv3d(cx, 3 * hidden, kernel, padding=pad, bias=False)
        self.conv_m = nn.Conv3d(hidden, 4 * hidden, kernel, padding=pad, bias=False)
        self.conv_o = nn.Conv3d(2 * hidden, hidden, kernel, padding=pad, bias=False)
        self.conv_last = nn.Conv3d(2 * hidden, hidden, 1, bias=False)
        self.norm_c = nn.GroupNorm(1, hidden)
        self.norm_xh = _norm(4 * hidden, layer_norm)
        self.norm_x = _norm(3 * hidden, layer_norm)
        self.norm_m = _norm(4 * hidden, layer_norm)
        self.norm_o = _norm(hidden, layer_norm)

    @classmethod
    def for_layer(cls, layer: int, in_channels: int, hidden: int, kernel_size: int, layer_norm: bool):
        return cls(in_channels, hidden, kernel_size, layer_norm, clip_input=layer > 0)

    @property
    def out_channels(self) -> int:
        return self.hidden * WINDOW

    def init_state(self, zeros) -> tuple:
        c = self.hidden
        past = None if self.clip_input else _clip(zeros(self.in_channels * (WINDOW - 1)), WINDOW - 1)
        return _clip(zeros(c * WINDOW)), _clip(zeros(c * WINDOW)), _clip(zeros(c * WINDOW ** 2), WINDOW ** 2), past

    def init_memory(self, zeros):
        return zeros(self.hidden * WINDOW)

    def forward(self, x, state, m, highway=None):
        h, c, remembered, past = state
        if self.clip_input:
            clip = _clip(x)
        else:
            clip = torch.cat([past, x.unsqueeze(2)], 2)
            past = clip[:, :, 1:]
        m = _clip(m)
        i, g, r, o_xh = torch.chunk(self.norm_xh(self.conv_xh(_causal(torch.cat([clip, h], 1)))), 4, 1)
        i2, g2, f2 = torch.chunk(self.norm_x(self.conv_x(_causal(clip))), 3, 1)
        i_m, g_m, f_m, m_m = torch.chunk(self.norm_m(self.conv_m(_causal(m))), 4, 1)
        c = torch.sigmoid(i) * torch.tanh(g) + self.norm_c(c + recall(torch.sigmoid(r), remembered))
        m = torch.sigmoid(f2 + f_m + FORGET_BIAS) * torch.tanh(m_m) + torch.sigmoid(i2 + i_m) * torch.tanh(g2 + g_m)
        cm = torch.cat([c, m], 1)
        o = torch.sigmoid(o_xh + self.norm_o(self.conv_o(_causal(cm))))
        h = with_highway(o, torch.tanh(self.conv_last(cm)), None if highway is None else _clip(highway))
        remembered = torch.cat([remembered[:, :, WINDOW:], c], 2)  # forget the oldest step's clip
        return _fold(h), (h, c, remembered, past), _fold(m)
