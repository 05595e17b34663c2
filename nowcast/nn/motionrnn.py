"""The MotionRNN framework: stacked recurrent blocks, MotionGRUs between them, Motion Highway, patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..units import DBZ_CEIL, DBZ_FLOOR
from . import backbones
from .config import ModelConfig
from .contract import FrameNetwork
from .motiongru import OFFSET_CHANNELS, MotionGRU


class MotionRNN(FrameNetwork):
    """MotionRNN around a recurrent backbone (or the plain backbone when motion and highway are off).

    The blocks follow the protocol of ``nowcast.nn.cells`` (``for_layer``, ``init_state``, ``init_memory``,
    ``out_channels``): each keeps its own opaque state; the MotionGRUs, the highway and the patches live here.

    Call: ``model(frames, n_out)`` with frames in [0, 1] shaped (B, T, H, W) (or (B, T, C, H, W) when
    in_channels > 1) -> predictions (B, n_out, H, W), not clamped. Any H, W: zero padded (the floor)
    to a multiple of patch_size * encoder stride and cropped back.

    Training: ``model(frames, n_out, truth=targets, sampling_mask=mask)`` with targets (B, n_out, H, W)
    and mask (B, n_out - 1); mask[:, j] = 1 feeds target j (frame T + j) as input at step T + j instead
    of the model's own prediction (scheduled sampling).

    ``return_motion=True`` returns ``(out, motion)``; motion holds, for each of the steps = T + n_out - 1
    recurrent steps (step t reads frame t and predicts frame t + 1) and each MotionGRU (between layer l and
    l + 1, l = 0..num_layers - 2):
      "trend": D,  "filter": F = F' + D,  "transient": F',
    each a tensor (B, steps, n_gru, 18, h, w) with h = ceil(H / (2 * patch)), w = ceil(W / (2 * patch))
    (the encoded grid of the padded frame; row 0 is the top of the frame). The 18 channels are 9 taps x (dy, dx),
    see ``nowcast.nn.motiongru``: channel 2k = dy (down positive), 2k + 1 = dx (right positive) of tap k, in
    encoded-grid pixels; the warp samples FROM position + offset, so content moves by -offset. For arrows:
    mean over taps of the offset x patch_size x 2 = radar pixels per step (sampling direction; negate for
    the direction the echoes move).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        cfg = config
        p = cfg.patch_size
        cin = cfg.in_channels * p * p
        hs = cfg.hidden_list
        block_cls = backbones.block_class(cfg.backbone)
        if block_cls.uses_memory and len(set(hs)) > 1:
            # the zigzag memory flows through every layer, so all layers need one size
            raise ValueError(f"backbone {cfg.backbone} needs the same hidden size in every layer, got {hs}")
        blocks: list[nn.Module] = []
        for l in range(cfg.num_layers):
            below = cin if l == 0 else blocks[-1].out_channels
            blocks.append(block_cls.for_layer(l, below, hs[l], cfg.kernel_size, cfg.layer_norm))
        self.blocks = nn.ModuleList(blocks)
        outs = [block.out_channels for block in blocks]
        self.motion_grus = nn.ModuleList(
            MotionGRU(outs[l], cfg.kernel_size, cfg.alpha, cfg.trend, cfg.transient) for l in range(cfg.num_layers - 1)
        ) if cfg.motion else nn.ModuleList()
        # layer 1's highway: the input patches projected to the size of what a block passes up
        self.highway_in = nn.Conv2d(cin, outs[0], 1, bias=False) if cfg.highway else None
        self.conv_out = nn.Conv2d(outs[-1], cin, 1, bias=False)
        if cfg.residual:
            nn.init.zeros_(self.conv_out.weight)  # start as persistence
        self._compiled_step = None  # compile_for_inference()

    @property
    def pad_multiple(self) -> int:
        return self.config.pad_multiple  # the patch size times the MotionGRU encoder's stride

    # -- opt-in compilation for inference -------------------------------------------------------------------
    def compile_for_inference(self, enabled: bool = True, backend: str = "inductor", channels_last: bool = True,
                              **options) -> "MotionRNN":
        """Run each recurrent step through ``torch.compile`` when no gradient is taken (a speed switch only).

        Fuses the many small element-wise operations of a step; pays most under bf16 autocast. A step is
        compiled per frame size, batch and precision on the first call with them (tens of seconds or more on a
        CPU), so it pays for long runs on one grid. Training and any call with gradients stay eager. Where
        torch.compile is missing or compiling fails, the model silently stays eager, for good. ``channels_last``
        also switches the weights to NHWC (``use_channels_last``), the layout the compiled convolutions use, so
        they are not converted at every step. ``options`` go to torch.compile's ``options`` (Inductor settings;
        avoid ``freezing``: with torch 2.13 it gave NaN under bf16 autocast). Returns the model.
        """
        self._compiled_step = None
        if enabled and hasattr(torch, "compile"):
            if channels_last:
                self.use_channels_last()
            kwargs = {"options": options} if options else {}
            try:
                self._compiled_step = torch.compile(self._step, backend=backend, dynamic=False, **kwargs)
            except Exception:  # noqa: BLE001 - any failure to set up compilation means eager
                self._compiled_step = None
        return self

    def __getstate__(self):
        # copies and pickles (parallel evaluation) carry the weights, not the compiled step: they run eager
        return {**self.__dict__, "_compiled_step": None}

    def _compiled_or_eager_step(self, *args):
        compiled = self._compiled_step
        if compiled is not None and not torch.is_grad_enabled():
            try:
                return compiled(*args)
            except Exception:  # noqa: BLE001 - a failed compilation (no C++ compiler, an unsupported op...)
                self._compiled_step = None  # eager from now on; a step is a pure function, so redo it
        return self._step(*args)

    # -- forward -------------------------------------------------------------------------------------
    def _growth_cap(self, x5: torch.Tensor) -> torch.Tensor | None:
        """Patches of the highest value each output pixel may take (``ModelConfig.growth_cap_dbz``), or None.

        The local maximum of the last input frame over a (2r+1)^2 square, plus the margin, on the [0, 1] scale."""
        margin = self.config.growth_cap_dbz
        if margin is None:
            return None
        r = self.config.growth_cap_radius
        last = x5[:, -1]
        local_max = F.max_pool2d(last, 2 * r + 1, stride=1, padding=r) if r > 0 else last
        cap = local_max + margin / (DBZ_CEIL - DBZ_FLOOR)
        return self._fmt(self._patches(cap.unsqueeze(1))[:, 0])

    def _step(self, inp, states, m, f, d, cap=None):
        """One recurrent step through the stack: (raw output patches, clamped feedback, states, m, f, d, F')."""
        states, f, d = list(states), list(f), list(d)
        highway = self.highway_in(inp) if self.highway_in is not None else None
        below = inp
        ft_step = []
        for l, block in enumerate(self.blocks):
            out, states[l], m = block(below, states[l], m, highway)
            if self.highway_in is not None:
                highway = out  # the layer below's hidden state bypasses the warp
            if l < len(self.motion_grus):
                below, f[l], d[l], ft = self.motion_grus[l](out, f[l], d[l])
                ft_step.append(ft)
            else:
                below = out
        raw = self.conv_out(out)
        if self.config.residual:
            raw = inp + raw  # the change from the frame read at this step
        if cap is not None:
            raw = torch.minimum(raw, cap)  # bounded growth, before feedback: no compounding over the rollout
        # Fed back within the physical range: an unclamped frame lets rollouts drift without bound.
        return raw, raw.clamp(0.0, 1.0), states, m, f, d, ft_step

    def _forward(self, frames, n_out, truth, sampling_mask, return_motion):
        n_out, squeeze, x5, patches, truth_p, sampling_mask = self._inputs(frames, n_out, truth, sampling_mask)
        B, T = x5.shape[:2]

        hp, wp = patches.shape[-2:]
        zeros = lambda c, h=hp, w=wp: self._fmt(patches.new_zeros(B, c, h, w))  # noqa: E731
        states = [block.init_state(zeros) for block in self.blocks]
        m = self.blocks[0].init_memory(zeros)
        n_gru = len(self.motion_grus)
        he, we = (hp + 1) // 2, (wp + 1) // 2
        f = [zeros(OFFSET_CHANNELS, he, we) for _ in range(n_gru)]
        d = [zeros(OFFSET_CHANNELS, he, we) for _ in range(n_gru)]
        record = {"trend": [], "filter": [], "transient": []} if return_motion else None
        cap = self._growth_cap(x5)

        eager = self._compiled_step is None
        step = self._step if eager else self._compiled_or_eager_step
        outputs = []
        pred = None
        for t in range(T + n_out - 1):
            if t < T:
                # a compiled step sees one memory layout for every input (one graph, not two)
                inp = self._fmt(patches[:, t] if eager else patches[:, t].contiguous())
            elif truth_p is not None and sampling_mask is not None:
                mk = sampling_mask[:, t - T].view(B, 1, 1, 1)
                inp = mk * self._fmt(truth_p[:, t - T]) + (1 - mk) * pred
            else:
                inp = pred
            raw, pred, states, m, f, d, ft_step = step(inp, states, m, f, d, cap)
            if t >= T - 1:
                outputs.append(raw)
            if record is not None:
                empty = patches.new_zeros(B, 0, OFFSET_CHANNELS, he, we)
                record["trend"].append(torch.stack(d, 1) if n_gru else empty)
                record["filter"].append(torch.stack(f, 1) if n_gru else empty)
                record["transient"].append(torch.stack(ft_step, 1) if n_gru else empty)

        out = self._outputs(torch.stack(outputs, 1), x5, squeeze)
        if record is None:
            return out
        return out, {k: torch.stack(v, 1) for k, v in record.items()}
