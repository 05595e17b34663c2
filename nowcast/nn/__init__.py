"""Neural networks: MotionRNN over a recurrent backbone, and stand-alone baselines (``backbones``)."""

from . import backbones
from .build import build_model, count_parameters
from .cells import ConvLSTMBlock, STLSTMBlock
from .config import ModelConfig
from .lagrangian import LagrangianMotionRNN, lagrangian_class
from .motiongru import MotionGRU, deform_warp
from .motionrnn import MotionRNN

__all__ = [
    "ConvLSTMBlock",
    "LagrangianMotionRNN",
    "ModelConfig",
    "MotionGRU",
    "MotionRNN",
    "STLSTMBlock",
    "backbones",
    "build_model",
    "count_parameters",
    "deform_warp",
    "lagrangian_class",
]
