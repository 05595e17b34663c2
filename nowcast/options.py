"""How a forecast method runs, as one value checked once: ``ModelOptions`` (device, precision, tiles, lead
smoothing, probability matching), and ``OptionError``, the error that names a parameter.

Library errors name the parameter (``precision``); the command line names its flag instead (``--precision``):
an ``OptionError`` keeps its message as a template whose ``{name}`` fields are parameters, and ``text(flags)``
fills them in either way. No torch here: options are checked before anything is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

import numpy as np

from .errors import NowcastError

# Precision names, one vocabulary for training and forecasting (``nowcast.runtime`` runs them):
# fp32 full precision; bf16 and fp16 autocast (fp16 on a GPU only); auto: bf16 or fp16 on a GPU, fp32 on a CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_PRECISION_ALIASES = {"off": "fp32", "float32": "fp32", "none": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# what `device` may say (torch checks at load time that it is there): auto, cpu, cuda, cuda:N, mps
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
# precisions that leave a baseline as it is (it runs in float64/float32 numpy whatever is asked)
_NEUTRAL_PRECISIONS = ("fp32", "auto")


class OptionError(NowcastError):
    """A parameter with a value that cannot be used. ``template`` names parameters as ``{name}``; the message
    names them as the library spells them, ``text(flag)`` as the caller spells them (the CLI: its flags)."""

    def __init__(self, template: str, *parameters: str, path=None):
        self.template = template
        self.parameters = parameters
        super().__init__(self._filled(lambda parameter: parameter), path)

    def _filled(self, spell) -> str:
        out = self.template
        for parameter in self.parameters:  # replace, not format: the values quoted may hold braces
            out = out.replace("{" + parameter + "}", spell(parameter))
        return out

    def text(self, spell=lambda parameter: parameter) -> str:
        """The message (after the file it concerns, if any) with each parameter spelled by ``spell``."""
        return f"{self.path}: {self._filled(spell)}" if self.path else self._filled(spell)


def _plain(value):
    """An option's text: Enum members (the CLI's fixed choices) by their value; None stays None."""
    return None if value is None else str(getattr(value, "value", value))


def normalize_precision(precision) -> str:
    """The canonical name (auto | fp32 | bf16 | fp16) of a precision setting; OptionError otherwise."""
    text = "fp32" if precision is None else _plain(precision).strip().lower()
    text = _PRECISION_ALIASES.get(text, text)
    if text not in PRECISIONS:
        raise OptionError(f"unknown {{precision}} {precision!r}; use {', '.join(PRECISIONS)}", "precision")
    return text


def check_pixels(value, parameter: str) -> int | None:
    """A size in pixels, 0 or more (None stays None); OptionError naming ``parameter`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise OptionError(f"{{{parameter}}} must be a whole number of pixels, 0 or more, got {value!r}", parameter)
    return int(value)


def check_smoothing(value, source=None) -> float:
    """A lead-smoothing width (pixels of sigma per lead) as a float >= 0. A bad one from a checkpoint (``source``,
    a file) is a NowcastError naming the file; one asked for is an OptionError naming ``lead_smoothing``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        problem = f"must be a number of pixels, 0 or more, got {value!r}"
        if source is not None:
            raise NowcastError(f"lead smoothing {problem}", source)
        raise OptionError(f"{{lead_smoothing}} {problem}", "lead_smoothing")
    return float(value)


def _check_device(device) -> str:
    text = "auto" if device is None else str(device)
    if not _DEVICE.fullmatch(text):
        raise OptionError(f"unknown {{device}} {device!r}; use auto, cpu or cuda", "device")
    return text


@dataclass(frozen=True)
class ModelOptions:
    """How a forecast method runs, checked when made (OptionError naming the parameter).

    device: auto (CUDA when torch sees a GPU), cpu, cuda, cuda:N. precision: ``PRECISIONS`` (aliases such as
    float32 become their canonical name). tile_size: the network's tiles in pixels (None: automatic on large
    grids, 0: the whole grid). lead_smoothing: pixels of Gaussian sigma per lead (None: the checkpoint's own).
    Those four are for models; prob_match (probability matching to the last observation) is for any method.
    """

    device: str = "auto"
    precision: str = "fp32"
    tile_size: int | None = None
    lead_smoothing: float | None = None
    prob_match: bool = False

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: the checked values replace the given ones once, here
        set_(self, "device", _check_device(self.device))
        set_(self, "precision", normalize_precision(self.precision))
        set_(self, "tile_size", check_pixels(self.tile_size, "tile_size"))
        if self.lead_smoothing is not None:
            set_(self, "lead_smoothing", check_smoothing(self.lead_smoothing))
        if not isinstance(self.prob_match, (bool, np.bool_)):
            raise OptionError(f"{{prob_match}} must be True or False, got {self.prob_match!r}", "prob_match")
        set_(self, "prob_match", bool(self.prob_match))

    def model_only(self) -> list[str]:
        """The parameters set here that only a model uses (a baseline cannot honour them)."""
        asked = [] if self.precision in _NEUTRAL_PRECISIONS else ["precision"]
        return asked + [f.name for f in fields(self) if f.name in ("tile_size", "lead_smoothing")
                        and getattr(self, f.name) is not None]

    def for_baseline(self) -> "ModelOptions":
        """These options for a baseline scored beside models: the model-only ones back at their defaults."""
        return replace(self, precision="fp32", tile_size=None, lead_smoothing=None)
