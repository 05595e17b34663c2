"""Conv-TT-LSTM (Su et al., "Convolutional Tensor-Train LSTM for Spatio-temporal Learning", NeurIPS 2020),
a baseline the MotionRNN paper compares against.

A higher-order ConvLSTM: instead of the last hidden state alone, each cell's gates read a sliding window
of its last ``STEPS`` hidden states, mixed through a convolutional tensor train of ``ORDER`` cores with
``RANKS`` channels: core l convolves its share of the window (``STEPS - ORDER + 1`` consecutive states,
oldest first) to RANKS channels and adds the convolved result of core l - 1; the last core's result and
the input give the four LSTM gates. This keeps the parameter count linear in the order.

Network (the paper's): blocks of ``LAYERS_PER_BLOCK`` cells; the output of block b is concatenated to the
output of block b + ``SKIP_STRIDE`` (a skip connection), and a 1x1 convolution reads out the frame. It runs
like PredRNN: step t reads frame t (an observed frame, or its own forecast, or with scheduled sampling
the true frame) and predicts frame t + 1.

ModelConfig: ``num_layers`` blocks, ``hidden`` channels per block (an int or a list), ``kernel_size`` every
convolution's kernel, ``patch_size`` the patches it reads. The paper's network is num_layers=4,
hidden=[32, 48, 48, 32], kernel_size=5, patch_size=1 (order 3, steps 3, ranks 8, as fixed below).
``residual``: each output is the frame read at that step plus the read-out, which starts at zero (an
untrained network is persistence).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .standalone import StandaloneNetwork

ORDER = 3  # cores of the tensor train
STEPS = 3  # past hidden states each cell reads
RANKS = 8  # channels between the cores
LAYERS_PER_BLOCK = 3
SKIP_STRIDE = 2  # block b's output joins block b + 2's


class ConvTTLSTMCell(nn.Module):
    """One Conv-TT-LSTM cell (biased convolutions, as the paper's).

    Core l's state convolution reads the concatenated window share, which holds exactly the weights of the
    reference's 3-D convolution over that share (its kernel spans the share's length in time).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int):
        super().__init__()
        self.hidden = hidden
        self.lags = STEPS - ORDER + 1
        pad = kernel_size // 2
        self.state_convs = nn.ModuleList(
            nn.Conv2d(hidden * self.lags, RANKS, kernel_size, padding=pad) for _ in range(ORDER))
        self.core_convs = nn.ModuleList(
            nn.Conv2d(RANKS, RANKS, kernel_size, padding=pad) for _ in range(ORDER - 1))
        self.gates = nn.Conv2d(in_channels + RANKS, 4 * hidden, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, past: list[torch.Tensor], c: torch.Tensor):
        """x (B, in, h, w); past: the last STEPS hidden states, oldest first; c the cell state -> (h, c)."""
        mixed = None
        for l, conv in enumerate(self.state_convs):
            share = conv(torch.cat(past[l : l + self.lags], 1))
            mixed = share if mixed is None else share + self.core_convs[l - 1](mixed)
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, mixed], 1)), 4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvTTLSTM(StandaloneNetwork):
    """The paper's Conv-TT-LSTM network on patches (see the module docstring)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        hs, k = config.hidden_list, config.kernel_size
        cin = self.patch_channels
        blocks = []
        for b in range(config.num_layers):
            first = cin if b == 0 else hs[b - 1] + (hs[b - 1 - SKIP_STRIDE] if b > SKIP_STRIDE else 0)
            blocks.append(nn.ModuleList(
                ConvTTLSTMCell(first if l == 0 else hs[b], hs[b], k) for l in range(LAYERS_PER_BLOCK)))
        self.blocks = nn.ModuleList(blocks)
        top = hs[-1] + (hs[-1 - SKIP_STRIDE] if config.num_layers > SKIP_STRIDE else 0)
        self.conv_out = nn.Conv2d(top, cin, 1)
        if config.residual:
            nn.init.zeros_(self.conv_out.weight)  # start as persistence
            nn.init.zeros_(self.conv_out.bias)

    def _step(self, x: torch.Tensor, past: list, cells: list) -> torch.Tensor:
        """One time step through every cell (states updated in place); returns the read-out's input."""
        outputs = []
        for b, block in enumerate(self.blocks):
            for l, cell in enumerate(block):
                j = b * LAYERS_PER_BLOCK + l
                x, cells[j] = cell(x, past[j], cells[j])
                past[j] = past[j][1:] + [x]
            outputs.append(x)
            if b >= SKIP_STRIDE:
                x = torch.cat([x, outputs[b - SKIP_STRIDE]], 1)
        return x

    def _forecast(self, patches, n_out, truth, mask):
        B, T = patches.shape[:2]
        hp, wp = patches.shape[-2:]
        zeros = lambda c: self._fmt(patches.new_zeros(B, c, hp, wp))  # noqa: E731
        sizes = [cell.hidden for block in self.blocks for cell in block]
        past = [[zeros(h) for _ in range(STEPS)] for h in sizes]
        cells = [zeros(h) for h in sizes]
        outputs, pred = [], None
        for t in range(T + n_out - 1):
            if t < T:
                inp = self._fmt(patches[:, t])
            elif truth is not None and mask is not None:
                mk = mask[:, t - T].view(B, 1, 1, 1)
                inp = mk * self._fmt(truth[:, t - T]) + (1 - mk) * pred
            else:
                inp = pred
            raw = self.conv_out(self._step(inp, past, cells))
            if self.config.residual:
                raw = inp + raw  # the change from the frame read at this step
            if t >= T - 1:
                outputs.append(raw)
            # fed back within the physical range, as MotionRNN does: unclamped rollouts drift
            pred = raw.clamp(0.0, 1.0)
        return torch.stack(outputs, 1)
