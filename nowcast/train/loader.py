"""Training batches: each process's share of every iteration's global batch, drawn in DataLoader workers.

Slot k of iteration i's global batch is ``WindowSampler.sample_at(i, k)``: a function of the seed, i and k
alone. A process therefore draws only its own slots (``Team.share``: rank r of W takes the contiguous slots
r*B/W .. (r+1)*B/W - 1, the same slice the scheduled-sampling mask and older runs' streams are cut by), any
worker can draw any iteration without shared state, the samples do not depend on the number of workers or
processes, and a resumed run that starts the loader at its iteration sees what an uninterrupted run sees.
With 0 workers the batches are drawn in the training process when they are needed.

Lagrangian windows need their optical flow: the workers inherit the sampler's ``MotionCache``, whose folder
(``run.motion_cache``, by default the run folder's motion_cache) is where they share it: a field one worker computed is read from
disk by the others. Two workers asking for the same new field at the same moment may both compute it; the
file is replaced atomically and the values are the same.

A run saved before keyed draws (its sampler state holds a numpy Generator's state) continues its own stream
in the training process (``StreamBatches``), so its resume stays exact.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import WindowSampler
from ..errors import NowcastError

KEYED = "keyed"
PREFETCH = 2  # batches each worker prepares ahead
AUTO_WORKERS_MAX = 4  # more rarely helps: one worker draws a batch of 8 in about the time of a GPU step


def as_tensors(batch: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def _unchanged(item):
    return item


def _ignore_interrupts(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the training process decides when to stop and shuts the
    # workers down, so a worker that died of it must not turn a clean stop into a "worker exited" error
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ShareOfIteration(Dataset):
    """Item i = this process's slots of iteration i's global batch, as CPU tensors."""

    def __init__(self, sampler: WindowSampler, slots: range):
        self.sampler, self.slots = sampler, slots

    def __getitem__(self, iteration: int) -> dict:
        return as_tensors(self.sampler.batch_at(iteration, self.slots))


class KeyedBatches:
    """This process's batches for iterations start .. stop-1, drawn by ``workers`` worker processes
    (0: in this process)."""

    def __init__(self, sampler: WindowSampler, share: slice, workers: int, start: int, stop: int,
                 pin_memory: bool = False):
        self.sampler = sampler
        dataset = ShareOfIteration(sampler, range(share.start, share.stop))
        # a private generator: DataLoader would otherwise draw its workers' base seed from the global torch
        # RNG, which the training state saves, and a resume would then differ from an uninterrupted run
        self.loader = DataLoader(dataset, batch_size=None, sampler=range(int(start), int(stop)),
                                 num_workers=int(workers), collate_fn=_unchanged, pin_memory=pin_memory,
                                 prefetch_factor=PREFETCH if workers else None,
                                 worker_init_fn=_ignore_interrupts if workers else None,
                                 generator=torch.Generator().manual_seed(sampler.seed))
        self._it = iter(self.loader)

    def next(self) -> dict:
        return next(self._it)

    def state_dict(self) -> dict:
        # the iteration is the key of the next batch: nothing else is needed to continue the stream
        return {"scheme": KEYED, "seed": self.sampler.seed}

    def close(self) -> None:
        """Stop the worker processes now (not whenever the iterator is collected)."""
        shutdown = getattr(self._it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._it = None


class StreamBatches:
    """The stream of a run saved before keyed draws: the global batch drawn here, this process's share kept."""

    def __init__(self, sampler: WindowSampler, batch_size: int, share: slice, state: dict):
        self.sampler, self.batch_size, self.share = sampler, int(batch_size), share
        sampler.load_state_dict(state)

    def next(self) -> dict:
        batch = self.sampler.sample_batch(self.batch_size)
        return as_tensors({k: v[self.share] for k, v in batch.items()})

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def close(self) -> None:
        pass


def is_stream_state(state: dict | None) -> bool:
    """True for the sampler state of a run saved before keyed draws."""
    return bool(state) and "bit_generator" in state


def batch_source(sampler: WindowSampler, saved: dict | None, batch_size: int, share: slice, workers: int,
                 start: int, stop: int, pin_memory: bool = False) -> KeyedBatches | StreamBatches:
    """The batches of a run from iteration ``start``; ``saved``: the sampler state of the run resumed."""
    if is_stream_state(saved):
        return StreamBatches(sampler, batch_size, share, saved)
    if saved and int(saved.get("seed", sampler.seed)) != sampler.seed:
        raise NowcastError(f"the run being resumed drew its samples with seed {saved['seed']}, not {sampler.seed}")
    return KeyedBatches(sampler, share, workers, start, stop, pin_memory)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(setting: int | None, device: torch.device, processes_per_node: int = 1) -> int:
    """The loader workers of a run: the setting, or (None: auto) 0 on a CPU, where the workers would take
    cores from the training itself, and on a GPU up to 4, leaving each process of the node one core."""
    if setting is not None:
        return int(setting)
    if device.type == "cpu":
        return 0
    per_process = usable_cores() // max(1, int(processes_per_node))
    return max(0, min(AUTO_WORKERS_MAX, per_process - 1))
