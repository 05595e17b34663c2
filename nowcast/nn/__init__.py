"""Neural networks: MotionRNN on a PredRNN (or ConvLSTM) backbone. See DESIGN.md."""

from .cells import BLOCKS, ConvLSTMBlock, STLSTMBlock
from .config import ModelConfig
from .motiongru import MotionGRU, deform_warp
from .lagrangian import LagrangianMotionRNN
from .motionrnn import MotionRNN, build_model, count_parameters

__all__ = [
    "BLOCKS",
    "ConvLSTMBlock",
    "LagrangianMotionRNN",
    "ModelConfig",
    "MotionGRU",
    "MotionRNN",
    "STLSTMBlock",
    "build_model",
    "count_parameters",
    "deform_warp",
]
