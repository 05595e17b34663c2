"""Caveats about a trained model that a forecaster should read before trusting its forecast.

Pure functions: the caller passes the forecaster and the facts of the run, and prints the lines.
"""

from __future__ import annotations

# Time steps that differ by less than this fraction count as the same (10-minute data stored as 599.9 s).
STEP_TOLERANCE = 0.02


def model_caveats(forecaster, n_out: int, step_minutes: float | None, is_default: bool | None = None) -> list[str]:
    """One sentence per caveat of running `forecaster` for `n_out` leads on input every `step_minutes`.

    Baselines (objects without a checkpoint's ``info``) have no caveats. For a trained model:
    not the recommended default (is_default None: as its checkpoint says), leads past the ones it was trained
    for, another time step than its training data (only when the checkpoint records its step).
    """
    info = getattr(forecaster, "info", None)
    if not isinstance(info, dict):
        return []
    if is_default is None:
        is_default = (info.get("meta") or {}).get("default_method") is True
    name = getattr(forecaster, "name", "the model")
    notes = []
    if not is_default:
        notes.append(f"{name} is not the recommended forecast method (its model card does not make it the "
                     "default); compare it with extrapolation in `nowcast evaluate` before relying on it")
    trained_leads = _trained_leads(info)
    if trained_leads is not None and n_out > trained_leads:
        notes.append(f"{name} was trained to forecast {trained_leads} frames; leads {trained_leads + 1} to "
                     f"{n_out} run past that and are less reliable")
    trained_step = (info.get("meta") or {}).get("step_minutes")
    if _steps_differ(trained_step, step_minutes):
        notes.append(f"{name} was trained on radar every {float(trained_step):g} min, but this input is every "
                     f"{float(step_minutes):g} min; the motion it learned per step does not fit this data")
    return notes


def _trained_leads(info: dict) -> int | None:
    config = info.get("config")
    leads = getattr(config, "output_frames", None)
    if leads is None and isinstance(config, dict):
        leads = config.get("output_frames")
    return None if leads is None else int(leads)


def _steps_differ(trained, used) -> bool:
    if trained is None or used is None:
        return False
    trained, used = float(trained), float(used)
    if trained <= 0 or used <= 0:
        return False
    return abs(trained - used) > STEP_TOLERANCE * trained
