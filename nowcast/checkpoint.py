"""Model checkpoints: one safetensors file holding the weights, with config and provenance in its header.

safetensors never executes code on load (unlike pickle-based torch.save files), so a downloaded
checkpoint cannot run anything. Header metadata keys (all JSON strings):
  nowcast.format   "nowcast-model/1"
  nowcast.config   ModelConfig.to_dict()
  nowcast.meta     normalisation, frames, training-data summary, tool version, anything the trainer adds
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_output
from .errors import NowcastError
from .nn import ModelConfig, build_model
from .runtime import resolve_device
from .version import __version__

FORMAT = "nowcast-model/1"
DEFAULT_MODEL_NAME = "motionrnn-lagrangian-radar"
NORMALISATION = "dbz clip [-10,70] -> [0,1]"
SUFFIX = ".safetensors"


def models_dir() -> Path:
    """Folder of named models: $NOWCAST_MODELS_DIR, else <repo>/models in a source checkout, else the
    copy that `pip install` puts in <prefix>/share/nowcast/models."""
    env = os.environ.get("NOWCAST_MODELS_DIR")
    if env:
        return Path(env)
    source = Path(__file__).resolve().parent.parent / "models"
    if (source / "SHA256SUMS").is_file():
        return source
    installed = Path(sys.prefix) / "share" / "nowcast" / "models"
    return installed if installed.is_dir() else source


def default_model_path() -> Path | None:
    path = models_dir() / f"{DEFAULT_MODEL_NAME}{SUFFIX}"
    return path if path.is_file() else None


def save_checkpoint(path, model: torch.nn.Module, config: ModelConfig, meta: dict | None = None) -> Path:
    """Write model weights + config + meta to one safetensors file, atomically. Returns the path."""
    path = Path(path)
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    full_meta = {
        "normalisation": NORMALISATION,
        "input_frames": config.input_frames,
        "output_frames": config.output_frames,
        "nowcast_version": __version__,
        "training_data": None,
    }
    full_meta.update(meta or {})
    # safetensors refuses shared or strided storage: store plain contiguous float copies
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return _write_checkpoint(path, tensors, config, full_meta)


def _write_checkpoint(path: Path, tensors: dict, config: ModelConfig, meta: dict) -> Path:
    """The one writer of a checkpoint file: tensors, and config and meta as JSON in the header; atomic."""
    from safetensors.torch import save_file

    header = {
        "nowcast.format": FORMAT,
        "nowcast.config": json.dumps(config.to_dict(), sort_keys=True),
        "nowcast.meta": json.dumps(meta, sort_keys=True, default=str),
    }
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def rewrite_settings(src, dst, config_changes: dict | None = None, meta_changes: dict | None = None) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with some of its ModelConfig and meta changed and its weights untouched
    (e.g. an inference-time growth cap on trained weights). The new config is validated; the weights must
    still fit the network it builds. Atomic; ``dst`` may be ``src``."""
    tensors, config, meta = read_checkpoint(src)
    try:
        config = ModelConfig.from_dict({**config.to_dict(), **(config_changes or {})})
    except NowcastError as exc:
        raise NowcastError(str(exc), src) from None
    except (TypeError, ValueError) as exc:
        raise NowcastError(f"bad model settings ({exc})", src) from None
    _check_weights(build_model(config), tensors, Path(src))
    return _write_checkpoint(Path(dst), tensors, config, {**meta, **(meta_changes or {})})


# the checkpoints a training run writes in its folder (nowcast.train.trainer), the preferred one first
RUN_CHECKPOINTS = ("best", "last")


def run_checkpoint(folder: Path) -> Path:
    """The checkpoint to use from a training run's folder: its best, else its last."""
    for stem in RUN_CHECKPOINTS:
        path = folder / f"{stem}{SUFFIX}"
        if path.is_file():
            return path
    raise NowcastError(f"this folder holds no trained model ({', '.join(s + SUFFIX for s in RUN_CHECKPOINTS)})",
                       folder)


def model_name(path) -> str:
    """A model's name: the file's stem, but a run's checkpoint is named after the run (its folder):
    runs/storm/best.safetensors is 'storm', runs/storm/last.safetensors 'storm/last'."""
    path = Path(path)
    run = path.resolve().parent.name
    if path.stem in RUN_CHECKPOINTS and run:
        return run if path.stem == RUN_CHECKPOINTS[0] else f"{run}/{path.stem}"
    return path.stem


def resolve_model_path(name_or_path) -> Path:
    """A bare name means <models dir>/<name>.safetensors; anything path-like is taken as a path: a checkpoint
    file, or a training run's folder (its best checkpoint, else its last)."""
    s = str(name_or_path)
    p = Path(s)
    looks_like_path = p.exists() or os.sep in s or "/" in s or s.endswith(SUFFIX) or s.startswith(".")
    if looks_like_path:
        if p.is_dir():
            return run_checkpoint(p)
        if not p.is_file():
            raise NowcastError("model file not found" if not p.exists() else "model path is not a file", p)
        return p
    path = models_dir() / f"{s}{SUFFIX}"
    if not path.is_file():
        avail = sorted(q.stem for q in models_dir().glob(f"*{SUFFIX}")) if models_dir().is_dir() else []
        hint = f"; available: {', '.join(avail)}" if avail else f"; no models in {models_dir()}"
        raise NowcastError(f"no model named {s!r}{hint}", path)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _recorded_sha256(path: Path) -> str | None:
    """The SHA-256 listed for a shipped model in <models dir>/SHA256SUMS, if any."""
    try:
        if path.resolve().parent != models_dir().resolve():
            return None
    except OSError:
        return None
    sums = models_dir() / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return None


def read_checkpoint(path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """Tensors, config and meta of a checkpoint file; NowcastError if it is not a nowcast checkpoint.

    tensors=False reads the header only (the returned tensor dict is empty).
    """
    want_tensors = tensors
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise NowcastError("model file not found", path)
    if path.stat().st_size < 8:
        raise NowcastError("not a model checkpoint (file is empty or truncated)", path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()} if want_tensors else {}
    except Exception as exc:  # safetensors raises its own error types, and OSError/ValueError
        raise NowcastError(f"not a readable safetensors model checkpoint ({exc})", path) from None
    if header.get("nowcast.format") != FORMAT or "nowcast.config" not in header:
        raise NowcastError("safetensors file is not a nowcast model checkpoint (no nowcast config in header)", path)
    try:
        cfg_dict = json.loads(header["nowcast.config"])
        meta = json.loads(header.get("nowcast.meta", "{}"))
    except json.JSONDecodeError as exc:
        raise NowcastError(f"checkpoint header is not valid JSON ({exc})", path) from None
    try:
        config = ModelConfig.from_dict(cfg_dict)
    except NowcastError as exc:
        raise NowcastError(str(exc), path) from None
    return tensors, config, meta


def _check_weights(model: torch.nn.Module, tensors: dict, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing weights {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected weights {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    for k in sorted(set(expected) & set(tensors)):
        if tuple(expected[k].shape) != tuple(tensors[k].shape):
            problems.append(f"{k} has shape {tuple(tensors[k].shape)}, config needs {tuple(expected[k].shape)}")
        elif not tensors[k].is_floating_point():
            problems.append(f"{k} has dtype {tensors[k].dtype}, expected floating point")
    if problems:
        raise NowcastError("config does not match weights: " + "; ".join(problems[:6]), path)


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint loaded: the network (eval mode) and what the file says about it.

    Unpacks as ``model, info = load_model(...)``, ``info`` being the same facts as a dict."""

    model: torch.nn.Module
    name: str  # the file's stem, or the run's name for a run's checkpoint (model_name)
    path: str
    config: ModelConfig
    meta: dict
    sha256: str

    @property
    def info(self) -> dict:
        return {"name": self.name, "path": self.path, "config": self.config, "meta": self.meta,
                "sha256": self.sha256}

    def __iter__(self):
        return iter((self.model, self.info))


def load_model(name_or_path, device="cpu") -> LoadedModel:
    """Load a checkpoint by name (models dir) or path.

    device: "cpu", "cuda", "cuda:1", ... or "auto" (CUDA when available).
    """
    path = resolve_model_path(name_or_path)
    digest = _sha256(path)
    recorded = _recorded_sha256(path)
    if recorded is not None and recorded != digest:
        raise NowcastError(
            f"SHA-256 mismatch: file has {digest}, SHA256SUMS records {recorded} (corrupt or replaced model)", path
        )
    tensors, config, meta = read_checkpoint(path)
    model = build_model(config)
    _check_weights(model, tensors, path)
    with torch.no_grad():
        model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=True)
    model.to(resolve_device(device)).eval()
    return LoadedModel(model, model_name(path), str(path), config, meta, digest)
