"""Which networks exist, by the name `--backbone` takes.

Two kinds:
- recurrent blocks (``RECURRENT``) that the MotionRNN framework stacks, with MotionGRUs between them and the
  Motion Highway (or plain, with motion and highway off): the paper's ConvLSTM, PredRNN, MIM, E3D-LSTM;
- stand-alone networks (``STANDALONE``) that the paper compares against and defines no MotionRNN form for
  (TrajGRU, Conv-TT-LSTM). They are built from the same ModelConfig and follow MotionRNN's call contract:
  ``model(frames, n_out, truth=None, sampling_mask=None, return_motion=False)`` and ``use_channels_last``.

Entries name a module of this package and a class in it, imported only when that network is built, so a
new network is one file plus one line here.
"""

from __future__ import annotations

import importlib

RECURRENT: dict[str, tuple[str, str]] = {
    "predrnn": ("cells", "STLSTMBlock"),
    "convlstm": ("cells", "ConvLSTMBlock"),
    "mim": ("mim", "MIMBlock"),
    "e3d": ("e3d", "E3DBlock"),
}

STANDALONE: dict[str, tuple[str, str]] = {
    "trajgru": ("trajgru", "TrajGRU"),
    "convttlstm": ("convttlstm", "ConvTTLSTM"),
}


def names() -> list[str]:
    """Every backbone name, recurrent blocks first."""
    return list(RECURRENT) + list(STANDALONE)


def is_standalone(name: str) -> bool:
    return name in STANDALONE


def _load(table: dict[str, tuple[str, str]], name: str):
    module, cls = table[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def block_class(name: str):
    """The recurrent block class the MotionRNN framework stacks for backbone ``name``."""
    return _load(RECURRENT, name)


def network_class(name: str):
    """The class of a stand-alone network (TrajGRU, Conv-TT-LSTM)."""
    return _load(STANDALONE, name)
