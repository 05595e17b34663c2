"""The training loop as an object: ``Trainer(config, sequences, val_sequences).run()``.

Files in the output folder
--------------------------
- ``train_state.pt`` (``state.py``): everything a resumed run needs, written in one atomic step.
- ``last.safetensors``: the latest weights as a normal checkpoint (``nowcast.checkpoint``), written right
  after ``train_state.pt``. Because the state file holds the weights too, a kill between the two writes
  loses nothing: resume reads the state file alone and rewrites a lagging ``last.safetensors``.
- ``best.safetensors``: the weights with the best validation score so far.
- ``log.csv`` / ``log.jsonl``: one row every ``log_every`` iterations and at every validation.

Samples (``loader.py``): slot k of iteration i's global batch is drawn from a generator keyed by (seed, i, k),
in ``run.loader_workers`` DataLoader worker processes ahead of the step (0: in this process, when needed).
The iteration is the key, so a resume continues the same samples with no sampler state, whatever the
number of workers or processes. A run saved before keyed draws continues its old stream in this process.

Several processes (torchrun, ``nowcast.distributed``): ``batch_size`` is the global batch. Each process
draws only its equal share (``Team.share``) and trains on it; the loss takes its counts (valid pixels,
soft-CSI hits and unions, GDL pairs) from the whole global batch, summed over the processes
(``objectives.masked_loss``'s ``pool``), DistributedDataParallel averages the gradients, and the loss is
scaled so that the update equals the one-process update on the whole batch.
Process 0 alone validates, writes checkpoints and logs, and reports progress.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

from .. import distributed
from ..checkpoint import read_checkpoint, save_checkpoint
from ..data import WindowSampler
from ..lagrangian_windows import MotionCache
from ..errors import NowcastError
from ..nn import build_model
from ..runtime import autocast_to, cpu_has_native_bf16, normalize_precision, precision_name, resolve_device
from ..runtime import training_autocast_dtype
from ..strict_json import json_safe
from .callbacks import BestCheckpoint, ProgressEvent, TrainLog, baseline_row, progress_callback
from .config import TrainConfig
from .datasets import prepare_data, step_minutes
from .loader import KEYED, batch_source, is_stream_state, resolve_workers
from .objectives import learning_rate, masked_loss, sampling_mask, truth_probability
from .signals import StopSignals
from .state import STATE_FILE, TrainState, data_fingerprint, load_train_state
from .validation import score_baselines, validate_model

LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"


class Trainer:
    """One training run. Construction checks everything that can be checked before any file is written."""

    def __init__(self, config: TrainConfig, sequences=(), val_sequences=(), progress=None):
        self.t_wall = time.perf_counter()
        self.config = config
        self.team = distributed.team_from_environment()
        if config.optim.batch_size % self.team.world:
            raise NowcastError(f"batch size {config.optim.batch_size} does not split evenly over "
                               f"{self.team.world} processes")
        self.callback = progress_callback(progress) if self.team.is_main else None
        self.out = Path(config.run.out)
        self.state_path, self.last_path, self.best_path = (self.out / f for f in (STATE_FILE, LAST_FILE, BEST_FILE))
        if not config.run.resume and not config.run.overwrite and (self.state_path.exists()
                                                                   or self.last_path.exists()):
            raise NowcastError("the output folder holds a training run already: resume it, or allow overwriting",
                               self.out)
        self.state = TrainState.load(self.state_path) if config.run.resume else None
        self.device = distributed.process_device(self.team, resolve_device(config.run.device))
        self.amp_dtype = training_autocast_dtype(config.run.precision, self.device)
        self.data = prepare_data(config, sequences, val_sequences)
        sampler_config = dataclasses.replace(
            config.data, synthetic_fraction=1.0 if not self.data.train else float(config.synthetic.fraction))
        self.sampler = WindowSampler(self.data.train, sampler_config, seed=config.optim.seed,
                                     synthetic=self.data.synthetic, motion_cache=motion_cache(config, self.out))
        self.fingerprint = {"train": data_fingerprint(self.data.train),
                            "synthetic": data_fingerprint(self.data.synthetic)}
        self.step_minutes = step_minutes(self.data.train + self.data.synthetic)
        self.best = BestCheckpoint(config.validation.metric)
        self.baselines: dict | None = None  # scored at the first validation, then kept
        self.notes: list[str] = []
        self.iteration = self.start_iteration = 0
        self.elapsed_before = 0.0
        self.changed_settings: list[str] = []
        self.last_validation = None

    # -- setup ------------------------------------------------------------------------------

    def build(self) -> None:
        """Model, optimizer and gradient scaler, from the seed (the same in every process)."""
        torch.manual_seed(int(self.config.optim.seed))
        self.model = build_model(self.config.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.optim.lr)
        # bf16 has float32's range: only fp16 needs its gradients scaled
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.train_model = self.model
        if self.team.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # DDP copies process 0's weights to the others at construction
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)

    def init_from(self, path) -> None:
        """Start a fresh run from the weights of a checkpoint of the same architecture."""
        tensors, init_config, _ = read_checkpoint(path)
        if init_config.to_dict() != self.config.model.to_dict():
            raise NowcastError(f"--init-from has another architecture ({init_config.to_dict()}); give the same "
                               "--backbone/--layers/--hidden/--kernel/--patch", path)
        self.model.load_state_dict(tensors)

    def restore(self, state: TrainState) -> None:
        """Continue exactly where ``state`` stopped: weights, optimizer, sampler, RNG, best score."""
        state.check_resumable(self.config.model.to_dict(), self.fingerprint, self.state_path)
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        if state.scaler and self.scaler.is_enabled():
            self.scaler.load_state_dict(state.scaler)
        # the sampler state goes to the batch source (_open_batches): keyed draws need none
        torch.set_rng_state(state.torch_rng)
        if self.device.type == "cuda" and state.cuda_rng is not None:
            torch.cuda.set_rng_state(state.cuda_rng, self.device)
        self.iteration = self.start_iteration = int(state.iteration)
        self.elapsed_before = float(state.train_time_s)
        self.best = BestCheckpoint(self.config.validation.metric, state.best)
        self.changed_settings = changed_settings(state.settings, self.config)

    def prepare_folder(self) -> None:
        """Create the output folder (and its parents) and start or continue the log."""
        if self.team.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.state is None:
                # a fresh run over an old one (overwrite): nothing of the old run may be mistaken for this one's
                for p in (self.state_path, self.last_path, self.best_path):
                    p.unlink(missing_ok=True)
        v = self.config.validation
        self.log = TrainLog(self.out, v.thresholds, v.baselines if self.data.val else (),
                            self.start_iteration if self.state is not None else None) if self.team.is_main else None

    # -- one iteration ----------------------------------------------------------------------

    def _open_batches(self) -> None:
        """This process's batches from the current iteration on (see the module docstring)."""
        o = self.config.optim
        self.loader_workers = resolve_workers(self.config.run.loader_workers, self.device, self.team.local_world)
        saved = self.state.sampler if self.state is not None else None
        self.stream_resumed = is_stream_state(saved)
        self.batches = batch_source(self.sampler, saved, o.batch_size, self.team.share(o.batch_size),
                                    self.loader_workers, self.iteration, o.iterations,
                                    pin_memory=self.device.type == "cuda")

    def _next_batch(self) -> dict:
        """This process's share of the iteration's global batch (CPU tensors); the wait is timed."""
        t0 = time.perf_counter()
        batch = self.batches.next()
        self.data_wait_s += time.perf_counter() - t0
        return batch

    def _tensor(self, tensor):
        return tensor.to(self.device, non_blocking=True)

    def _team_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """A sum over the team (the loss's counts: valid pixels, soft-CSI hits and unions, GDL pairs)."""
        return distributed.all_sum(self.team, tensor)

    def step(self) -> tuple[float, float, float]:
        """One optimizer step on this process's share of the next global batch; returns (this process's
        loss, lr, truth probability)."""
        o, share = self.config.optim, self.team.share(self.config.optim.batch_size)
        batch = self._next_batch()
        lr = learning_rate(self.iteration, o)
        p_truth = truth_probability(self.iteration, o.truth_iterations)
        smask = sampling_mask(o.seed, self.iteration, o.batch_size, self.config.model.output_frames - 1, p_truth)
        x, y, m = (self._tensor(batch[k]) for k in ("inputs", "targets", "mask"))
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_to(self.amp_dtype, self.device):
            pred = self.train_model(x, self.config.model.output_frames, truth=y,
                                    sampling_mask=self._tensor(torch.from_numpy(smask[share])))
        # a team's loss divides by the counts of the whole global batch, summed over the processes
        loss = masked_loss(pred, y, m, o.loss, o.balanced_loss, o.balance_power,
                           pool=self._team_sum if self.team.enabled else None,
                           balance_on=o.balance_on, soft_csi=o.soft_csi, gdl=o.gdl)
        # DDP averages gradients over the processes; scaling by their number makes it the global sum
        self.scaler.scale(loss * self.team.world if self.team.enabled else loss).backward()
        if o.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        return float(loss.detach()), lr, p_truth

    # -- validation and files ---------------------------------------------------------------

    def validate(self) -> dict:
        """Score the model (and, once per run, the baselines) on the validation windows; keep the best."""
        if self.baselines is None:
            self.baselines, notes = score_baselines(self.data.val, self.config, self.best.terms)
            self.notes += notes
            for note in notes:
                self.emit("validation", message=note)
        scores = validate_model(self.model, self.config.model, self.data.val, self.config, self.device,
                                self.best.terms)
        self.last_validation = {"iteration": self.iteration, **scores}
        if self.best.offer(self.iteration, scores["metric"], scores):
            self.export(self.best_path, {"kind": "best", "validation": scores})
        self.emit("validation", scores=scores, baselines=self.baselines)
        return scores

    def meta(self) -> dict:
        """Checkpoint metadata: the settings, data, time step and the baselines' validation scores."""
        names = self.data.names()
        return {"settings": self.config.to_dict(), "training_data": names["train"] + names["synthetic"],
                "validation_data": names["val"], "step_minutes": self.step_minutes,
                "time_strides": list(self.config.data.time_strides), "precision": precision_name(self.amp_dtype),
                "validation_baselines": self.baselines, "iteration": self.iteration}

    def export(self, path: Path, extra: dict) -> None:
        if self.team.is_main:
            save_checkpoint(path, self.model, self.config.model, json_safe({**self.meta(), **extra}))

    def checkpoint(self) -> None:
        """The training state first (it alone is what resume needs), then last.safetensors."""
        if not self.team.is_main:
            return
        best = self.best.as_dict()
        best["scores"] = json_safe(best["scores"])
        TrainState(
            iteration=self.iteration,
            model={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            model_config=self.config.model.to_dict(), optimizer=self.optimizer.state_dict(),
            sampler=self._sampler_state(), torch_rng=torch.get_rng_state(), settings=self.config.to_dict(),
            data=self.fingerprint, best=json_safe(best),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
            cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            train_time_s=self.train_time(),
        ).save(self.state_path)
        self.export(self.last_path, {"kind": "last"})

    def _sampler_state(self) -> dict:
        if self.batches is not None:
            return self.batches.state_dict()
        # stopped before the batches were opened: the stream the run had
        return self.state.sampler if self.state is not None else {"scheme": KEYED, "seed": self.sampler.seed}

    def train_time(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_loop)

    def emit(self, kind: str, **kw) -> None:
        if self.callback is None:
            return
        try:
            self.callback(ProgressEvent(kind=kind, iteration=self.iteration, total=self.config.optim.iterations,
                                        start_iteration=self.start_iteration, **kw))
        except KeyboardInterrupt:
            if not self.team.enabled or kind == "end":
                raise
            self.stop.request()  # the others learn of it at the next iteration's sum

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> dict:
        created_group = distributed.join(self.team, self.device)
        try:
            self.build()
            if self.state is not None:
                self.restore(self.state)
            elif self.config.run.init_from:
                self.init_from(self.config.run.init_from)
            self.prepare_folder()
            self.t_loop = time.perf_counter()
            if self.state is not None:
                # a kill between the two writes leaves last.safetensors one checkpoint behind: bring it up to date
                self.export(self.last_path, {"kind": "last"})
            with StopSignals() as self.stop, deterministic(self.config.run.deterministic):
                status, note = self._loop()
            return self.summary(status, note)
        finally:
            distributed.leave(created_group)

    def _loop(self) -> tuple[str, str | None]:
        self.consistent = True  # False while an optimizer step is half done
        self._rate = _Rate()
        self.data_wait_s = 0.0
        status, note = "completed", None
        self.batches = None
        try:
            self._open_batches()
            self.emit("start", message=self._start_message())
            self.model.train()
            self.stop_agreed = False
            while self.iteration < self.config.optim.iterations:
                if self.stop_agreed if self.team.enabled else self.stop.requested:
                    raise KeyboardInterrupt
                self.consistent = False
                loss, lr, p_truth = self.step()
                self.consistent = True
                self._after_step(loss, lr, p_truth)
        except KeyboardInterrupt:
            status = "interrupted"
            if self.consistent:
                self.checkpoint()
                note = f"interrupted: saved a checkpoint at iteration {self.iteration}; resume to continue"
            else:
                note = "interrupted during an update: the last periodic checkpoint is kept"
        finally:
            if self.batches is not None:
                self.batches.close()
            try:
                self.emit("end", message=note)
            except KeyboardInterrupt:
                pass
        return status, note

    def _start_message(self) -> str:
        text = f"training on {self.device.type}"
        on_cpu, native = self.device.type == "cpu", cpu_has_native_bf16()
        if normalize_precision(self.config.run.precision) == "auto" and on_cpu:
            text += (" (bf16: precision auto, and this CPU has native bf16)" if self.amp_dtype is not None else
                     " (fp32: precision auto, and this CPU has no native bf16, which would be emulated and slow)")
        elif self.amp_dtype is not None:
            text += f" ({precision_name(self.amp_dtype)})"
            if on_cpu and self.amp_dtype == torch.bfloat16 and native is False:
                text += ("; note: this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 is emulated and much "
                         "slower than fp32 here: use --precision fp32")
        if self.stream_resumed and self.loader_workers:
            text += ("; samples drawn in the training process, not by loader workers (the run was saved before "
                     "keyed samples: its own stream continues)")
        elif self.loader_workers:
            text += f"; samples drawn by {self.loader_workers} loader worker(s)"
        return text + (f", resumed at iteration {self.iteration}" if self.start_iteration else "")

    def _after_step(self, loss_value: float, lr: float, p_truth: float) -> None:
        """Agree on stopping, log, validate, checkpoint and report after one iteration."""
        o, it = self.config.optim, self.iteration
        if self.team.enabled:
            loss_value, stops = distributed.sum_across(self.team, [loss_value, float(self.stop.requested)],
                                                       self.device)
            self.stop_agreed = stops > 0
        if not math.isfinite(loss_value):
            raise NowcastError(f"the training loss became {loss_value} at iteration {it}; "
                               "try a lower learning rate or grad_clip")
        row = self._rate.add(loss_value, it % self.config.run.log_every == 0 or it == o.iterations, self.data_wait_s)
        if row is not None:
            row = {"iteration": it, **row, "lr": lr, "truth_probability": p_truth, "elapsed_s": self.train_time()}
        if self.data.val and (it % self.config.validation.every == 0 or it == o.iterations):
            if self.team.is_main:  # the others wait at the barrier
                scores = self.validate()
                row = row or {"iteration": it, "lr": lr, "truth_probability": p_truth,
                              "elapsed_s": self.train_time()}
                row.update({"val_metric": scores["metric"],
                            **{f"val_{k}": v for k, v in scores.items() if k != "metric"},
                            **baseline_row(self.baselines or {})})
            distributed.barrier(self.team)
            self._rate.restart(self.data_wait_s)  # validation time is not training speed
        if row is not None and self.log is not None:
            self.log.write(row)
        if it % self.config.run.checkpoint_every == 0 or it == o.iterations:
            self.checkpoint()
            self.emit("checkpoint", message=f"checkpoint at iteration {it}")
        # last, so that an interruption raised by the callback finds this iteration complete
        self.emit("step", loss=loss_value, lr=lr, it_per_s=self._rate.smooth, truth_probability=p_truth,
                  eta_s=(o.iterations - it) / self._rate.smooth,
                  logged=row if row is not None and "loss" in row else None)

    def summary(self, status: str, note: str | None) -> dict:
        best = self.best.as_dict()
        return json_safe({
            "status": status, "iterations": self.iteration,
            "saved_iteration": self.iteration if self.consistent else None,
            "start_iteration": self.start_iteration, "target_iterations": self.config.optim.iterations,
            "wall_time_s": time.perf_counter() - self.t_wall, "train_time_s": self.train_time(),
            "device": str(self.device), "rank": self.team.rank,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "precision": precision_name(self.amp_dtype), "step_minutes": self.step_minutes,
            "best": best, "last_validation": self.last_validation,
            "baselines": self.baselines, "ahead_of": ahead_of(best, self.baselines, self.best.higher_better),
            "paths": {"out": str(self.out), "last": str(self.last_path),
                      "best": str(self.best_path) if self.best_path.exists() else None,
                      "state": str(self.state_path), "log_csv": str(self.out / "log.csv"),
                      "log_jsonl": str(self.out / "log.jsonl")},
            "data": self.data.names(), "changed_settings": self.changed_settings,
            "notes": self.notes, "message": note,
        })


class _Rate:
    """Mean loss and speed since the last log row, and a smoothed it/s for the progress display."""

    def __init__(self):
        self.wait_at_log = 0.0
        self.restart()
        self.loss_sum, self.loss_n, self.smooth = 0.0, 0, None

    def restart(self, data_wait_s: float | None = None) -> None:
        self.t_log = self.t_prev = time.perf_counter()
        if data_wait_s is not None:
            self.wait_at_log = data_wait_s

    def add(self, loss: float, log_now: bool, data_wait_s: float = 0.0) -> dict | None:
        """``data_wait_s``: the run's time spent waiting for batches so far (a running total)."""
        now = time.perf_counter()
        self.loss_sum += loss
        self.loss_n += 1
        step_rate = 1.0 / max(now - self.t_prev, 1e-9)
        self.t_prev = now
        self.smooth = step_rate if self.smooth is None else 0.9 * self.smooth + 0.1 * step_rate
        if not log_now:
            return None
        span = max(now - self.t_log, 1e-9)
        # the share of the time since the last row spent waiting for samples (their drawing, with 0 workers)
        waited = data_wait_s - self.wait_at_log
        row = {"loss": self.loss_sum / self.loss_n, "it_per_s": self.loss_n / span,
               "data_wait_fraction": min(1.0, max(0.0, waited / span))}
        self.loss_sum, self.loss_n, self.t_log, self.wait_at_log = 0.0, 0, now, data_wait_s
        return row


class deterministic:
    """torch.use_deterministic_algorithms for the block (warnings only where an op has no such kernel)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        self.before = torch.are_deterministic_algorithms_enabled()
        if self.enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc):
        if self.enabled:
            torch.use_deterministic_algorithms(self.before)


def changed_settings(saved: dict, config: TrainConfig) -> list[str]:
    """The settings (dotted keys) that differ from the run being resumed."""
    try:
        before = TrainConfig.from_dict(saved).flat() if saved else {}
    except NowcastError:
        return ["(settings of the saved run unreadable)"]
    now = config.flat()
    return sorted(k for k, v in now.items() if k not in ("run.resume", "run.overwrite") and before.get(k, v) != v)


def ahead_of(best: dict, baselines: dict | None, higher_better: bool) -> dict:
    """{baseline name: whether the best validation score beats it} (None where undefined)."""
    value = best.get("value")
    out = {}
    for name, scores in (baselines or {}).items():
        b = scores.get("metric")
        if value is None or b is None or not (math.isfinite(value) and math.isfinite(b)):
            out[name] = None
        else:
            out[name] = bool(value > b if higher_better else value < b)
    return out


def train(config: TrainConfig, sequences=(), val_sequences=(), progress=None) -> dict:
    """Train a network as ``config`` says on ``sequences``; returns a summary dict.

    sequences / val_sequences: (name, DataArray (time, y, x) in dBZ) pairs (or bare DataArrays).
    progress: None (quiet) or a callable that receives a ProgressEvent at the start, after every
    iteration, at validations and checkpoints, and at the end. A KeyboardInterrupt from the callback,
    or SIGINT / SIGTERM during the run, saves a checkpoint after the current iteration and returns with
    status "interrupted"; ``run.resume`` continues.

    Summary: status ("completed" | "interrupted"), iterations, start_iteration, wall_time_s,
    train_time_s (over all sessions of the run), device, amp, precision, step_minutes,
    best {iteration, metric, value, scores}, last_validation, baselines {name: scores}, ahead_of
    {baseline: bool}, paths {out, last, best, state, log_csv, log_jsonl}, data {train, synthetic, val,
    unsplit}, changed_settings, notes.
    """
    return Trainer(config, sequences, val_sequences, progress).run()


__all__ = ["BEST_FILE", "LAST_FILE", "STATE_FILE", "Trainer", "load_train_state", "train"]


def motion_cache(config, out: Path) -> MotionCache | None:
    """Where a Lagrangian run keeps its windows' optical flow: ``run.motion_cache``, else the run folder's
    motion_cache (a folder several runs on the same archive can share; entries are keyed by content)."""
    if config.model.frame != "lagrangian":
        return None
    return MotionCache(config.run.motion_cache or out / "motion_cache")
