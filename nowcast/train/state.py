"""The training state: everything a resumed run needs, in one file written in one atomic step.

``train_state.pt`` holds the iteration, model weights, optimizer, GradScaler, sampler state, torch RNG,
the best score so far, the settings and a fingerprint of the data. It is read with
``torch.load(weights_only=True)`` (plain tensors and containers), so it cannot run code.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic import atomic_output
from ..errors import NowcastError

STATE_FILE = "train_state.pt"
STATE_VERSION = 1


@dataclass
class TrainState:
    iteration: int
    model: dict
    model_config: dict
    optimizer: dict
    sampler: dict
    torch_rng: torch.Tensor
    settings: dict  # TrainConfig.to_dict()
    data: dict  # data_fingerprint() of the training and synthetic sequences
    best: dict = field(default_factory=dict)  # {iteration, metric, value, scores}
    scaler: dict = field(default_factory=dict)
    cuda_rng: torch.Tensor | None = None
    train_time_s: float = 0.0

    def to_dict(self) -> dict:
        best = dict(self.best)
        best["scores"] = json.dumps(best["scores"]) if best.get("scores") else ""
        return {
            "version": STATE_VERSION, "iteration": int(self.iteration), "model": self.model,
            "model_config": self.model_config, "optimizer": self.optimizer, "scaler": self.scaler,
            "sampler": self.sampler, "torch_rng": self.torch_rng, "cuda_rng": self.cuda_rng, "best": best,
            "train_time_s": float(self.train_time_s), "settings": json.dumps(self.settings), "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        best = dict(d.get("best") or {})
        best["scores"] = json.loads(best["scores"]) if best.get("scores") else None
        return cls(
            iteration=int(d["iteration"]), model=d["model"], model_config=d["model_config"],
            optimizer=d["optimizer"], sampler=d["sampler"], torch_rng=d["torch_rng"],
            settings=json.loads(d.get("settings") or "{}"), data=d["data"], best=best,
            scaler=d.get("scaler") or {}, cuda_rng=d.get("cuda_rng"), train_time_s=float(d.get("train_time_s", 0.0)),
        )

    def save(self, path) -> None:
        """Write atomically (temporary file, fsync, rename): a kill leaves the old state or the new one."""
        buf = io.BytesIO()
        torch.save(self.to_dict(), buf)
        with atomic_output(Path(path)) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())

    @classmethod
    def load(cls, path) -> "TrainState":
        return cls.from_dict(load_train_state(path))

    def check_resumable(self, model_config: dict, fingerprint: dict, path) -> None:
        """Refuse a resume whose architecture or training data differ from the saved run's."""
        if self.model_config != model_config:
            raise NowcastError(f"the model settings differ from the run being resumed (saved: {self.model_config})",
                               path)
        if self.data != fingerprint:
            raise NowcastError("the training data differ from the run being resumed (same files and options "
                               "needed for an exact resume)", path)


def load_train_state(path) -> dict:
    """Read a train_state.pt safely (plain tensors and containers only), as the dict it stores."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NowcastError("no training state to resume from", path) from None
    except Exception as exc:  # a truncated or foreign file
        raise NowcastError(f"cannot read the training state: {exc}", path) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise NowcastError("not a nowcast training state (or from another version)", path)
    return state


def data_fingerprint(seqs) -> list:
    """Names and shapes of (name, sequence) pairs: what a resume checks the data against."""
    return [[name, [int(s) for s in getattr(da, "shape", ())]] for name, da in seqs]
