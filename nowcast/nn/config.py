"""Model configuration: everything needed to rebuild a network from a checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import NowcastError
from . import backbones

FRAMES = ("eulerian", "lagrangian")
ADVECTION_MODES = ("bilinear", "nearest")  # nowcast.motion.ADVECTION_MODES (not imported: this module stays torch-free)


@dataclass
class ModelConfig:
    """Hyper-parameters of a MotionRNN (or plain) recurrent nowcasting network.

    Defaults are the paper's radar setting: 4 PredRNN layers x 64 channels, 5x5 kernels,
    4x4 patches, 5 input frames -> 10 output frames, MotionGRU + Motion Highway on.

    Ablation switches: ``motion=False`` (no MotionGRU), ``highway=False`` (no Motion Highway),
    ``trend=False`` (D fixed at zero), ``transient=False`` (no ConvGRU recurrence: F' is a
    fresh tanh(conv(Enc(H))) each step). ``motion=False, highway=False`` is the plain backbone.

    ``residual=True`` (not in the paper): each output frame is the frame read at that step plus the
    network's change, and the output layer starts at zero, so an untrained network forecasts persistence
    and training only has to learn how echoes move and change. It makes short CPU budgets count.

    ``frame="lagrangian"`` (not in the paper; L-CNN and LUPIN): the network works in Lagrangian coordinates.
    An optical-flow field carries the inputs to the time of the last one and the network's output forward
    by each lead (``nowcast.nn.lagrangian``); it must be ``residual``, so an untrained network is exactly
    the optical-flow extrapolation nowcast and training learns growth, decay and motion corrections.

    ``growth_cap_dbz`` (not in the paper): every output frame, and every frame fed back in the rollout, is
    held at or below the local maximum of the last input frame (over a square of ``growth_cap_radius``
    pixels either side) plus this many dBZ. In the Lagrangian frame the motion is already taken out, so the
    cap bounds intensification, not movement: the network can spread, weaken and reshape echo, but cannot
    grow a heavy cell where the last observation had none, nor compound a small growth step by step over
    the rollout. None: no cap (the paper's network).

    ``advection`` (Lagrangian frame only): how frames are sampled between pixels when they are carried along
    the flow, in training and in forecasts: "bilinear" (what checkpoints without the key were trained with) or
    "nearest". Bilinear sampling averages narrow heavy cores with their neighbours: on FMI's 1 km grid it halves
    the area of 40 dBZ echo at the first lead (benchmarks/bench_advection_interp.py), and the network learns
    from a truth that has lost it too. Nearest carries every value unchanged.
    """

    backbone: str = "predrnn"
    motion: bool = True
    highway: bool = True
    trend: bool = True
    transient: bool = True
    num_layers: int = 4
    hidden: int | list[int] = 64
    kernel_size: int = 5
    patch_size: int = 4
    input_frames: int = 5
    output_frames: int = 10
    layer_norm: bool = False
    alpha: float = 0.5
    in_channels: int = 1
    residual: bool = False
    frame: str = "eulerian"
    growth_cap_dbz: float | None = None
    growth_cap_radius: int = 4
    advection: str = "bilinear"

    def __post_init__(self):
        self.validate()

    @property
    def hidden_list(self) -> list[int]:
        if isinstance(self.hidden, (list, tuple)):
            return [int(h) for h in self.hidden]
        return [int(self.hidden)] * int(self.num_layers)

    @property
    def encoder_stride(self) -> int:
        """Stride of the MotionGRU encoder (1 when there is no MotionGRU)."""
        return 2 if self.motion else 1

    @property
    def pad_multiple(self) -> int:
        """Frames are padded to a multiple of this (patch size times encoder stride)."""
        return self.patch_size * self.encoder_stride

    def validate(self) -> None:
        def bad(msg):
            raise NowcastError(f"invalid model config: {msg}")

        if self.backbone not in backbones.names():
            bad(f"backbone {self.backbone!r} unknown; choose one of {', '.join(backbones.names())}")
        if backbones.is_standalone(self.backbone) and (self.motion or self.highway):
            bad(f"backbone {self.backbone} has no MotionRNN form (the paper uses it as a baseline only); "
                "turn motion and highway off (--no-motion)")
        if backbones.is_standalone(self.backbone) and self.layer_norm is True:
            bad(f"backbone {self.backbone} has no layer norm (nor has the reference network); turn layer_norm off")
        for name in ("motion", "highway", "trend", "transient", "layer_norm", "residual"):
            if not isinstance(getattr(self, name), bool):
                bad(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("num_layers", "kernel_size", "patch_size", "input_frames", "output_frames", "in_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(f"{name} must be a positive integer, got {v!r}")
        if self.kernel_size % 2 == 0:
            bad(f"kernel_size must be odd, got {self.kernel_size}")
        if isinstance(self.hidden, (list, tuple)):
            if len(self.hidden) != self.num_layers:
                bad(f"hidden lists {len(self.hidden)} sizes for {self.num_layers} layers")
            self.hidden = [int(h) for h in self.hidden]
        hs = self.hidden_list
        if any(h < 1 for h in hs):
            bad(f"hidden sizes must be positive, got {self.hidden!r}")
        zigzag = not backbones.is_standalone(self.backbone) and backbones.block_class(self.backbone).uses_memory
        if len(set(hs)) > 1 and (zigzag or self.highway or self.motion):
            # the zigzag memory, the highway and the MotionGRU hand tensors between layers
            bad("different hidden sizes per layer only work for convlstm without highway and motion, and for "
                f"the stand-alone networks ({', '.join(backbones.STANDALONE)})")
        if self.motion and hs[0] < 4:
            bad("MotionGRU needs at least 4 hidden channels (its encoder uses hidden/4)")
        if self.frame not in FRAMES:
            bad(f"frame {self.frame!r} unknown; choose one of {', '.join(FRAMES)}")
        if self.frame == "lagrangian" and not self.residual:
            bad("a lagrangian model must be residual (its untrained forecast is the extrapolation nowcast)")
        if self.advection not in ADVECTION_MODES:
            bad(f"advection {self.advection!r} unknown; choose one of {', '.join(ADVECTION_MODES)}")
        if self.growth_cap_dbz is not None:
            cap = self.growth_cap_dbz
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0.0 <= float(cap) <= 80.0:
                bad(f"growth_cap_dbz must be a number of dBZ in [0, 80] or none, got {cap!r}")
            self.growth_cap_dbz = float(cap)
        r = self.growth_cap_radius
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            bad(f"growth_cap_radius must be a non-negative integer (pixels), got {r!r}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            bad(f"alpha must lie in [0, 1], got {self.alpha}")
        self.alpha = float(self.alpha)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(d["hidden"], tuple):
            d["hidden"] = list(d["hidden"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise NowcastError(f"model config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NowcastError(
                f"model config has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        try:
            return cls(**d)
        except TypeError as exc:
            raise NowcastError(f"invalid model config: {exc}") from None

