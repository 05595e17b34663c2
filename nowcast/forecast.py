"""Forecasts from a trained network, behind the same contract as the other forecast methods."""

from __future__ import annotations

import numpy as np
import torch

from . import postprocess, tiling
from .checkpoint import load_model
from .errors import NowcastError
from .forecast_method import ForecastMethod
from .options import ModelOptions, check_pixels, check_smoothing
from .runtime import autocast, autocast_dtype, resolve_device
from .units import dbz_to_unit, unit_to_dbz


def name_clashing_models(forecasters, sources) -> None:
    """Rename models whose names clash (two runs' ``best.safetensors``) after the path they came from.

    Score tables and JSON are keyed by method name, so each model needs its own.
    """
    names = [f.name for f in forecasters]
    for f, source in zip(forecasters, sources):
        if names.count(f.name) > 1:
            f.name = str(source)


class ModelForecaster(ForecastMethod):
    """A MotionRNN checkpoint as a forecast method: dBZ in, dBZ out (NaN regions kept, floored).

    The network reads the last ``input_frames`` frames (from the checkpoint's config) on the
    [0, 1] scale of ``units.dbz_to_unit`` (no data counts as the floor), in batches of ``batch_size``,
    in ``precision`` (``runtime``'s vocabulary: fp32, bf16, fp16 on a GPU, auto).

    tile_size: None (default) runs grids over ``tiling.AUTO_TILE_PIXELS`` pixels in tiles of
    ``tiling.DEFAULT_TILE``; 0 always runs the whole grid; N runs tiles of N pixels (rounded up to the
    model's pad multiple), each computed with ``tile_halo`` pixels of neighbours (default
    ``tiling.halo_for``) and blended. A Lagrangian model's flow and advection always use the whole grid:
    only the network, which works in the Lagrangian frame, runs per tile.

    lead_smoothing: the Gaussian width, in pixels per lead, of ``postprocess.lead_smoothing`` applied to the
    network's forecast (linear Z, sigma = lead x width); None (default) takes the checkpoint's own
    ``lead_smoothing_px`` (its card's recipe; absent = 0), 0 gives the network's forecast untouched.
    """

    def __init__(self, model, info: dict, device=None, batch_size: int = 8, precision: str = "fp32",
                 tile_size: int | None = None, tile_halo: int | None = None, lead_smoothing: float | None = None):
        if batch_size < 1:
            raise NowcastError(f"batch_size must be at least 1, got {batch_size}")
        self.info = info
        self.config = info["config"]
        self.name = info.get("name", "model")
        self.input_frames = int(self.config.input_frames)
        # the one check of the options (ModelOptions); tile_halo, an expert's knob, by the same rule
        options = ModelOptions(precision=precision, tile_size=tile_size, lead_smoothing=lead_smoothing)
        self.device = next(model.parameters()).device if device is None else resolve_device(device)
        self.precision = options.precision
        autocast_dtype(self.precision, self.device)  # refuses fp16 on a CPU now, not at the first forecast
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.tile_size = options.tile_size
        self.tile_halo = check_pixels(tile_halo, "tile_halo")
        if options.lead_smoothing is None:  # the checkpoint's own recipe
            self.lead_smoothing = check_smoothing((info.get("meta") or {}).get("lead_smoothing_px", 0.0),
                                                  info.get("path") or "the model's checkpoint")
        else:
            self.lead_smoothing = options.lead_smoothing

    @classmethod
    def from_options(cls, name_or_path, options: ModelOptions) -> "ModelForecaster":
        """A checkpoint run as ``options`` say (its device, precision, tiles and lead smoothing)."""
        return cls.from_checkpoint(name_or_path, device=options.device, precision=options.precision,
                                   tile_size=options.tile_size, lead_smoothing=options.lead_smoothing)

    @classmethod
    def from_checkpoint(cls, name_or_path, device="auto", **kwargs) -> "ModelForecaster":
        dev = resolve_device(device)
        model, info = load_model(name_or_path, device=dev)
        if dev.type == "cpu" and hasattr(model, "use_channels_last"):
            # under bf16, oneDNN's CPU convolutions run NHWC about twice as fast (benchmarks/model_speed.json);
            # fp32 is level. Only for a model loaded here: one handed in (a training run's) keeps its layout
            model.use_channels_last(True)
        return cls(model, info, device=dev, **kwargs)

    @property
    def lagrangian(self) -> bool:
        return getattr(self.config, "frame", "eulerian") == "lagrangian"

    @property
    def uses_motion(self) -> bool:
        """A Lagrangian model advects along the inputs' optical flow; an Eulerian one needs none."""
        return self.lagrangian

    def tiles_for(self, shape: tuple[int, int], n_out: int) -> list | None:
        """The tiles the network runs on for an (H, W) grid, or None for the whole grid."""
        h, w = shape
        size = self.tile_size
        if size is None:
            size = tiling.DEFAULT_TILE if h * w > tiling.AUTO_TILE_PIXELS else 0
        if size == 0 or (size >= h and size >= w):
            return None
        halo = self.tile_halo
        if halo is None:
            halo = tiling.halo_for(self.config, n_out, self.lagrangian)
        return tiling.tiles((h, w), size, halo, int(self.config.pad_multiple))

    def _network(self, frames: torch.Tensor, n_out: int) -> torch.Tensor:
        """The network's (unclamped) forecast of (B, T, H, W) frames, whole or in tiles."""
        tile_list = self.tiles_for(tuple(frames.shape[-2:]), n_out)
        if tile_list is None:
            return self.model(frames, n_out)
        return tiling.run_tiled(lambda window: self.model(window, n_out), frames, n_out, tile_list)

    def _run(self, xb: torch.Tensor, vb: torch.Tensor | None, n_out: int):
        """Forecast (B, n_out, H, W) on the [0, 1] scale and where it has a source (None: everywhere).
        A Lagrangian model advects around the network, which alone runs in tiles."""
        if vb is None:
            return self._network(xb, n_out), None
        return self.model.around_network(xb, vb, n_out, lambda lagrangian: self._network(lagrangian, n_out))

    def _capturing(self, captured: list):
        """A runner like _run on the whole grid that also appends each batch's MotionGRU states (numpy) to
        ``captured`` (predict_with_motion)."""

        def run(xb: torch.Tensor, vb: torch.Tensor | None, n_out: int):
            states = []

            def network(frames):
                res, motion = self.model(frames, n_out, return_motion=True)
                states.append(motion)
                return res

            out, ok = (network(xb), None) if vb is None else self.model.around_network(xb, vb, n_out, network)
            kept = {k: v.float().cpu().numpy() for k, v in states[0].items()}
            if vb is not None:
                kept["flow"] = vb.cpu().numpy()
            captured.append(kept)
            return out, ok

        return run

    def _forecast_batch(self, batch: np.ndarray, n_out: int, motion: np.ndarray | None) -> np.ndarray:
        return self._forecast_with(self._run, batch, n_out, motion)

    def _forecast_with(self, run, batch: np.ndarray, n_out: int, velocity: np.ndarray | None) -> np.ndarray:
        """(B, n_out, H, W) dBZ from ``run`` (xb, vb, n_out) -> (forecast on [0, 1], where it has a source);
        velocity: the inputs' (B, 2, H, W) flow for a Lagrangian model, else None."""
        x = dbz_to_unit(batch[:, -self.input_frames :])
        outs, valid = [], []
        with torch.inference_mode(), autocast(self.precision, self.device):
            for i in range(0, x.shape[0], self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
                vb = None if velocity is None else torch.from_numpy(velocity[i : i + self.batch_size]).to(self.device)
                res, ok = run(xb, vb, n_out)
                outs.append(res.float().clamp_(0.0, 1.0).cpu().numpy())
                if ok is not None:
                    valid.append(ok.cpu().numpy())
        out = unit_to_dbz(np.concatenate(outs, 0))
        if valid:  # trajectories from beyond the grid have no source: no data, as in extrapolation
            out[~np.concatenate(valid, 0)] = np.nan
        return out

    def _postprocess(self, forecast: np.ndarray) -> np.ndarray:
        # the recipe the checkpoint's card chose on validation windows: smaller scales, less predictable with
        # lead, are spread as an ensemble mean would. After the no-data mask, so no-data pixels stay out of
        # the averages; window by window in place, so a large grid holds one extra window, not a copy of all.
        if self.lead_smoothing > 0:
            for i, window in enumerate(forecast):
                forecast[i] = postprocess.lead_smoothing(window, self.lead_smoothing)
        return forecast

    def predict_with_motion(self, inputs, n_out: int = 10, motion=None):
        """Forecasts (as ``self(inputs, n_out, motion)``, but always on the whole grid) and the MotionGRU states
        as numpy arrays.

        motion: {"trend", "filter", "transient"} each (B, steps, n_gru, 18, h, w), without B for a
        single (T, H, W) input; layout and sign convention as documented in ``nowcast.nn.MotionRNN``.
        """
        batch, single = self._checked(inputs)
        captured: list = []
        velocity = self._motion_of(batch, motion)
        out = self._finish(self._forecast_with(self._capturing(captured), batch, int(n_out), velocity), batch)
        out = out[0] if single else out
        keys = ("trend", "filter", "transient") + (("flow",) if self.lagrangian else ())
        motion = {k: np.concatenate([c[k] for c in captured], 0) for k in keys}
        if single:
            motion = {k: v[0] for k, v in motion.items()}
        return out, motion
