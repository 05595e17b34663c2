"""Build the network a ModelConfig describes: MotionRNN over a recurrent block, or a stand-alone network,
in the plain (Eulerian) frame or in Lagrangian coordinates."""

from __future__ import annotations

from torch import nn

from ..errors import NowcastError
from . import backbones
from .config import ModelConfig
from .lagrangian import lagrangian_class
from .motionrnn import MotionRNN


def build_model(config) -> nn.Module:
    """Build the network described by a ModelConfig (or a config dict)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    elif not isinstance(config, ModelConfig):
        raise NowcastError(f"build_model needs a ModelConfig or dict, got {type(config).__name__}")
    else:
        config.validate()
    if backbones.is_standalone(config.backbone):
        cls = backbones.network_class(config.backbone)
    else:
        cls = MotionRNN
    if config.frame == "lagrangian":
        cls = lagrangian_class(cls)
    return cls(config)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
