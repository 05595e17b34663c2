"""TrajGRU in the HKO-7 encoder-forecaster (Shi et al., "Deep learning for precipitation nowcasting:
a benchmark and a new model", NeurIPS 2017), a baseline the MotionRNN paper compares against.

TrajGRU is a convolutional GRU whose recurrent connections follow learned trajectories: from the input
and the previous state a small network produces L flow fields; the state is sampled bilinearly at each
position moved back along each flow (L warped copies), and a 1x1 convolution of the copies replaces the
hidden-to-hidden convolution of a ConvGRU.

Encoder-forecaster (the benchmark's structure): the encoder runs a stem convolution, then RNN level 1,
a strided convolution, RNN level 2, ... over the input frames; the forecaster starts each level from
the encoder's last state of that level and runs the top level without input, each level below reading
the upsampled (transposed convolution) outputs of the level above; the bottom level's outputs are
upsampled to the patch grid and read out. The forecaster never reads frames, its own forecasts
included, so ``truth``/``sampling_mask`` (scheduled sampling) are checked but change nothing.

ModelConfig: ``num_layers`` RNN levels, ``hidden`` channels per level (an int or a list), ``kernel_size``
the input-to-state kernel, ``patch_size`` the patches the stem reads. The benchmark's network is
num_layers=3, hidden=[64, 192, 192], kernel_size=3, patch_size=1 (its 480x480 frames give levels of
96, 32 and 16 pixels). The constants below are the benchmark's (HKO-7 configuration
trajgru_55_55_33_1_64_1_192_1_192_13_13_9_b4.yml); strided layers pad their input to a multiple of
their stride, and the transposed convolutions are cropped back, so any frame size works.
``residual``: every lead is the last input frame plus the network's output, whose last convolution
starts at zero (an untrained network is persistence).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .standalone import StandaloneNetwork

STEM_CHANNELS = 8  # the first convolution's (and the last transposed convolution's) channels
STEM = (7, 5, 1)  # kernel, stride, padding of the stem conv and of the head's transposed conv
DOWNSAMPLE = ((5, 3, 1), (3, 2, 1))  # between levels 1-2 and 2-3 (further levels repeat the last)
UPSAMPLE = ((5, 3, 1), (4, 2, 1))  # the transposed convolutions that undo them exactly
LINKS = (13, 13, 9)  # trajectories per level, the same in encoder and forecaster (further levels: the last)
FLOW_CHANNELS = 32  # the flow generator's hidden channels
FLOW_KERNEL = 5
LEAK = 0.2  # leaky ReLU slope, the benchmark's activation everywhere


def _level(table: tuple, level: int):
    return table[min(level, len(table) - 1)]


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAK)


def warp_links(h: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """``h`` (B, C, H, W) sampled at every position minus each flow (B, 2L, H, W; channels x, y per link).

    Returns the L warped copies as (B, L * C, H, W), link after link. Bilinear, zero outside the grid,
    pixel centres at the grid ends (as the benchmark's BilinearSampler); one grid_sample call for all links.
    """
    B, C, H, W = h.shape
    L = flows.shape[1] // 2
    f = flows.reshape(B, L, 2, H, W).to(h.dtype)
    xs = torch.arange(W, device=h.device, dtype=h.dtype).view(1, 1, 1, W)
    ys = torch.arange(H, device=h.device, dtype=h.dtype).view(1, 1, H, 1)
    gx = (xs - f[:, :, 0]) * (2.0 / max(W - 1, 1)) - 1.0
    gy = (ys - f[:, :, 1]) * (2.0 / max(H - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], -1).reshape(B, L * H, W, 2)  # the links stacked along the height
    out = F.grid_sample(h, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(B, C, L, H, W).transpose(1, 2).reshape(B, L * C, H, W)


class TrajGRUCell(nn.Module):
    """One TrajGRU. ``in_channels=0`` for the forecaster's top level, which reads no input.

    r, u, candidate gates: r = sigmoid(Wx_r + H_r), u = sigmoid(Wx_u + H_u),
    n = leaky(Wx_n + r * H_n), h' = u * h + (1 - u) * n, with H = 1x1 conv of the L warped copies of h.
    """

    def __init__(self, in_channels: int, hidden: int, links: int, kernel_size: int):
        super().__init__()
        self.hidden = hidden
        pad, fpad = kernel_size // 2, FLOW_KERNEL // 2
        self.i2h = nn.Conv2d(in_channels, 3 * hidden, kernel_size, padding=pad) if in_channels else None
        self.i2f = nn.Conv2d(in_channels, FLOW_CHANNELS, FLOW_KERNEL, padding=fpad) if in_channels else None
        self.h2f = nn.Conv2d(hidden, FLOW_CHANNELS, FLOW_KERNEL, padding=fpad)
        self.flows = nn.Conv2d(FLOW_CHANNELS, 2 * links, FLOW_KERNEL, padding=fpad)
        self.h2h = nn.Conv2d(hidden * links, 3 * hidden, 1)
        # the benchmark's INIT_GRID: every trajectory starts as "stay in place"
        nn.init.zeros_(self.flows.weight)
        nn.init.zeros_(self.flows.bias)

    def input_terms(self, x: torch.Tensor) -> torch.Tensor:
        """The input's gate and flow terms, for many steps at once: x (N, C, H, W) -> (N, 3 hidden + 32, H, W)."""
        return torch.cat([self.i2h(x), self.i2f(x)], 1)

    def forward(self, h: torch.Tensor, xh: torch.Tensor | None = None, xf: torch.Tensor | None = None):
        hf = self.h2f(h)
        flows = self.flows(_act(hf if xf is None else hf + xf))
        hh = torch.chunk(self.h2h(warp_links(h, flows)), 3, 1)
        if xh is None:
            r, u = torch.sigmoid(hh[0]), torch.sigmoid(hh[1])
            n = _act(r * hh[2])
        else:
            xr, xu, xn = torch.chunk(xh, 3, 1)
            r, u = torch.sigmoid(xr + hh[0]), torch.sigmoid(xu + hh[1])
            n = _act(xn + r * hh[2])
        return u * h + (1 - u) * n


def _pad_to(x: torch.Tensor, m: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    return F.pad(x, (0, (-W) % m, 0, (-H) % m))


class TrajGRU(StandaloneNetwork):
    """The HKO-7 TrajGRU encoder-forecaster on patches (see the module docstring)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        hs, n, k = config.hidden_list, config.num_layers, config.kernel_size
        cin = self.patch_channels
        self.stem = nn.Conv2d(cin, STEM_CHANNELS, STEM[0], stride=STEM[1], padding=STEM[2])
        self.down = nn.ModuleList(
            nn.Conv2d(hs[l], hs[l + 1], *_level(DOWNSAMPLE, l)) for l in range(n - 1))
        self.encoder = nn.ModuleList(
            TrajGRUCell(STEM_CHANNELS if l == 0 else hs[l], hs[l], _level(LINKS, l), k) for l in range(n))
        self.forecaster = nn.ModuleList(
            TrajGRUCell(0 if l == n - 1 else hs[l], hs[l], _level(LINKS, l), k) for l in range(n))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(hs[l + 1], hs[l], *_level(UPSAMPLE, l)) for l in range(n - 1))
        self.head_up = nn.ConvTranspose2d(hs[0], STEM_CHANNELS, STEM[0], stride=STEM[1], padding=STEM[2])
        self.head = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, padding=1)
        self.conv_out = nn.Conv2d(STEM_CHANNELS, cin, 1)
        if config.residual:
            nn.init.zeros_(self.conv_out.weight)  # start as persistence
            nn.init.zeros_(self.conv_out.bias)

    def _per_frame(self, fn, seq: torch.Tensor) -> torch.Tensor:
        """Apply a layer to every frame of a (B, T, C, H, W) sequence."""
        B, T = seq.shape[:2]
        out = fn(self._fmt(seq.reshape(B * T, *seq.shape[2:])))
        return out.reshape(B, T, *out.shape[1:])

    def _run(self, cell: TrajGRUCell, h: torch.Tensor, steps: int, inputs: torch.Tensor | None):
        """Unroll one level for ``steps`` steps from state h; inputs (B, steps, C, H, W) or None."""
        terms = None if inputs is None else self._per_frame(cell.input_terms, inputs)
        gates = 3 * cell.hidden
        outs = []
        for t in range(steps):
            if terms is None:
                h = cell(h)
            else:
                h = cell(h, terms[:, t, :gates], terms[:, t, gates:])
            outs.append(h)
        return torch.stack(outs, 1), h

    def _encode(self, patches: torch.Tensor):
        """The encoder: each level's last state and grid size (the stem's input grid first)."""
        B, T = patches.shape[:2]
        sizes = [tuple(patches.shape[-2:])]
        seq = self._per_frame(lambda x: _act(self.stem(_pad_to(x, STEM[1]))), patches)
        states = []
        for l, cell in enumerate(self.encoder):
            sizes.append(tuple(seq.shape[-2:]))
            h0 = self._fmt(seq.new_zeros(B, cell.hidden, *seq.shape[-2:]))
            seq, h = self._run(cell, h0, T, seq)
            states.append(h)
            if l < len(self.down):
                stride = self.down[l].stride[0]
                seq = self._per_frame(lambda x: _act(self.down[l](_pad_to(x, stride))), seq)
        return states, sizes

    def _forecast(self, patches, n_out, truth, mask):
        states, sizes = self._encode(patches)
        inputs = None
        for l in range(len(self.forecaster) - 1, -1, -1):
            seq, _ = self._run(self.forecaster[l], states[l], n_out, inputs)
            up = self.up[l - 1] if l > 0 else self.head_up
            h, w = sizes[l]  # the grid of the level below (the patch grid below level 1)
            inputs = self._per_frame(lambda x: _act(up(x))[..., :h, :w], seq)
        out = self._per_frame(lambda x: self.conv_out(_act(self.head(x))), inputs)
        if self.config.residual:
            out = out + patches[:, -1:]  # every lead: the last frame plus the network's change
        return out
