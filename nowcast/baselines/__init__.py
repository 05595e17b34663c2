"""The baselines every evaluation can show beside a model, one module each, all behind the forecast-method
contract (``nowcast.forecast_method``); ``nowcast.methods`` is the registry that names and builds them.

- ``persistence``: the last frame, repeated.
- ``extrapolation``: pysteps Lucas-Kanade motion + semi-Lagrangian advection of the last frame, and
  ``extrapolation-smoothed`` (smoothing that widens with lead, then probability matching).
- ``anvil``: pysteps' ANVIL (autoregressive cascade nowcast with growth and decay) on rain rate.
"""
