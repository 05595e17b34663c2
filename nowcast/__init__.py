"""nowcast: precipitation nowcasting from weather radar with MotionRNN.

The library's entry points (what the commands call):

- ``open_radar(paths)``: radar files as one (time, y, x) sequence in dBZ (``nowcast.radar``);
- ``predict(source, method=..., leads=10)``: the CF Dataset that ``nowcast predict`` writes (``nowcast.pipeline``);
- ``evaluate(sequences, methods)``: several methods scored on the same windows (``nowcast.evaluate``).

``evaluate`` shadows the module of the same name as an attribute of the package; the module itself is
``sys.modules["nowcast.evaluate"]`` (``from nowcast.evaluate import ...`` works as ever).
"""

from .evaluate import evaluate
from .pipeline import predict
from .radar import open_radar
from .version import __version__

__all__ = ["__version__", "evaluate", "open_radar", "predict"]
