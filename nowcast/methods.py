"""The forecast-method registry, and nothing else: which method a name, a model and options stand for.

Every method - the baselines (``nowcast.baselines``: one module each) and the trained network
(``nowcast.forecast.ModelForecaster``) - follows the contract of ``nowcast.forecast_method``:

    method(inputs, n_out, motion=None) -> forecasts        method.forecast(ForecastInput, n_out) -> ForecastOutput

inputs: float32 dBZ shaped (T, H, W) or (B, T, H, W), NaN where there is no data; motion: their optical flow,
passed in by whoever estimated it (a method that advects estimates it itself when it is not given).
forecasts: float32 dBZ shaped (n_out, H, W) or (B, n_out, H, W), floored at -10 dBZ, NaN (no data) where
- the last input frame has no data (no-data regions are kept as no data, docs/conventions.md), and
- the forecast would need data from beyond the grid: rain advected in from outside the domain is
  unknown, not dry. Scores skip these pixels as they skip missing observations.
Inside a method, wherever an algorithm needs finite values, no data counts as the floor (no echo).

The registry (``resolve``, ``default_spec``, ``check_spec``, ``method_names``, and for sets of methods
``comparison_specs``, ``check_specs``, ``resolve_all``) owns the policy of which method a command runs: the CLI,
the library (``nowcast.predict``) and the benchmarks call it, so they cannot disagree. How a method runs (device,
precision, tiles, smoothing, probability matching) is one checked value, ``nowcast.options.ModelOptions``.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import replace

from .baselines.anvil import Anvil
from .baselines.extrapolation import Extrapolation, SmoothedExtrapolation
from .baselines.persistence import Persistence
from .errors import NowcastError, NowcastWarning
from .forecast_method import ForecastMethod
from .matched import ProbabilityMatched
from .options import ModelOptions, OptionError

BUILTIN_METHODS = {
    "persistence": Persistence,
    "extrapolation": Extrapolation,
    "extrapolation-smoothed": SmoothedExtrapolation,
    "anvil": Anvil,
}


def get_method(name: str) -> ForecastMethod:
    """A built-in baseline by name (see BUILTIN_METHODS)."""
    try:
        return BUILTIN_METHODS[name]()
    except KeyError:
        raise OptionError(f"unknown {{method}} {name!r}; choose one of {', '.join(BUILTIN_METHODS)} or give "
                          "a {model}", "method", "model") from None


# ------------------------------------------------------------------------------------ registry

MODEL = "model"


def method_names() -> list[str]:
    """Every name ``--method`` accepts: 'model' (a trained network) and the baselines."""
    return [MODEL, *BUILTIN_METHODS]


def _pysteps_available() -> bool:
    return importlib.util.find_spec("pysteps") is not None and importlib.util.find_spec("cv2") is not None


def _default_model_wanted() -> bool:
    """Whether the shipped default checkpoint exists and its card makes it the default (header only)."""
    from . import checkpoint  # imports torch

    path = checkpoint.default_model_path()
    if path is None:
        return False
    return checkpoint.read_checkpoint(path, tensors=False)[2].get("default_method") is True


def default_spec() -> str:
    """The method a command runs when given neither --method nor --model.

    The shipped model once its checkpoint says ``default_method: true`` (it beats the baselines), else
    extrapolation; persistence, with a warning, only where pysteps is somehow missing.
    """
    if _default_model_wanted():
        return MODEL
    if _pysteps_available():
        return "extrapolation"
    warnings.warn(
        "pysteps is not installed, so the forecast is persistence; "
        "pip install pysteps opencv-python-headless for optical-flow extrapolation",
        NowcastWarning,
        stacklevel=2,
    )
    return "persistence"


def baseline_in_use(spec: str | None, model: str | None) -> str | None:
    """The baseline that spec/model select, or None when they select a model."""
    if model is not None or spec == MODEL:
        return None
    if spec is None:
        spec = default_spec()
    return None if spec == MODEL else spec


def _plain(option):
    """An option's text: Enum members (the CLI's fixed choices) by their value; None stays None."""
    return None if option is None else str(getattr(option, "value", option))


def model_options(options: ModelOptions | None = None, **changes) -> ModelOptions:
    """``options`` (default: ``ModelOptions()``) with ``changes`` (device=, precision=, ...), checked once."""
    options = options if options is not None else ModelOptions()
    return replace(options, **changes) if changes else options


def check_spec(spec: str | None, model: str | None, options: ModelOptions | None = None, **changes) -> None:
    """Refuse, before anything is loaded, a method choice that cannot run as asked (OptionError naming the
    parameter): an unknown method, a model beside a baseline, or an option for models only (``ModelOptions``:
    device, precision, tiles, lead smoothing) with a baseline. prob_match applies to every method."""
    options = model_options(options, **changes)
    spec, model = _plain(spec), _plain(model)
    if spec is not None and spec not in method_names():
        raise OptionError(f"unknown {{method}} {spec!r}; choose one of {', '.join(method_names())}", "method")
    if spec in BUILTIN_METHODS and model is not None:
        raise OptionError(f"{{method}} {spec} does not use {{model}} {model}; give {{method}} {MODEL} (or no "
                          "{method}) to forecast with a model", "method", "model")
    asked = options.model_only()
    baseline = baseline_in_use(spec, model) if asked else None
    if baseline is None:
        return
    which = f"the {baseline} method" if spec is not None else f"the default method, {baseline}"
    parameter = asked[0]
    value = f" {options.precision}" if parameter == "precision" else ""
    hint = " (extrapolation with smoothing is {method} extrapolation-smoothed)" \
        if parameter == "lead_smoothing" else ""
    raise OptionError(f"{{{parameter}}}{value} applies to models only, not to {which}{hint}", parameter, "method")


def resolve(spec: str | None = None, model: str | None = None, options: ModelOptions | None = None,
            **changes) -> ForecastMethod:
    """The forecast method that spec (a name from method_names()) and model (a checkpoint name or path) ask for,
    run as ``options`` say (``ModelOptions``; keyword ``changes`` such as precision="bf16" amend them).

    Neither given: default_spec(). spec 'model' or a model given: the trained network (the shipped default
    model when no model is named), its network run in tiles of ``tile_size``, its forecast smoothed with
    ``lead_smoothing`` pixels per lead (None: as its checkpoint says; 0: not at all) (``ModelForecaster``).
    prob_match wraps the method in ProbabilityMatched.
    """
    options = model_options(options, **changes)
    check_spec(spec, model, options)
    spec, model = _plain(spec), _plain(model)
    if spec is None and model is None:
        spec = default_spec()
    if model is not None or spec == MODEL:
        method = _load_model(model, options)
    else:
        method = BUILTIN_METHODS[spec]()
    return ProbabilityMatched(method) if options.prob_match else method


def _load_model(model: str | None, options: ModelOptions) -> ForecastMethod:
    from .checkpoint import DEFAULT_MODEL_NAME  # torch-based: imported only when a model is wanted
    from .forecast import ModelForecaster

    return ModelForecaster.from_options(model or DEFAULT_MODEL_NAME, options)


# ------------------------------------------------------------------------------------ method sets

DEFAULT_MODEL_ALIAS = "default"  # in a list of models: the shipped default model


def comparison_specs(models=(), baselines=()) -> list[tuple[str, str | None]]:
    """(spec, model) pairs to score side by side: the models (``'default'`` = the shipped one), then the
    baselines. Neither given: the default method, with persistence beside it (the reference every method must
    beat)."""
    specs = [(MODEL, None if _plain(name) == DEFAULT_MODEL_ALIAS else _plain(name)) for name in models or ()]
    specs += [(_plain(name), None) for name in baselines or ()]
    if not specs:
        specs = [(default_spec(), None)]
        if specs[0][0] != "persistence":
            specs.append(("persistence", None))
    return specs


def options_for(spec: str, options: ModelOptions, models_asked: bool) -> ModelOptions:
    """The options of one method of a set: as asked for the models and for a lone baseline (which check_spec
    then refuses as asked); baselines beside models run as they always do (``ModelOptions.for_baseline``)."""
    return options if spec == MODEL or not models_asked else options.for_baseline()


def check_specs(specs, options: ModelOptions | None = None, **changes) -> None:
    """Refuse a set of methods that cannot be scored together as asked, before anything is loaded."""
    options = model_options(options, **changes)
    names = [model or spec for spec, model in specs]
    if len(set(names)) != len(names):
        raise NowcastError(f"the same method is named twice: {', '.join(names)}")
    models_asked = any(spec == MODEL for spec, _ in specs)
    for spec, model in specs:
        check_spec(spec, model, options_for(spec, options, models_asked))


def resolve_all(specs, options: ModelOptions | None = None, **changes) -> list:
    """Every (spec, model) pair built as one method; two checkpoints with one name are renamed after their
    files, and the names that remain must differ."""
    options = model_options(options, **changes)
    models_asked = any(spec == MODEL for spec, _ in specs)
    methods = [resolve(spec, model, options_for(spec, options, models_asked)) for spec, model in specs]
    loaded = [(m, model) for (spec, model), m in zip(specs, methods) if spec == MODEL]
    if len(loaded) > 1:
        from .forecast import name_clashing_models  # torch: models are loaded already

        name_clashing_models([m for m, _ in loaded], [model or DEFAULT_MODEL_ALIAS for _, model in loaded])
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise NowcastError(f"the same method is named twice: {', '.join(names)}")
    return methods
