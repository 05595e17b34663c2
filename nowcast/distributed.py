"""Training in several processes under torchrun: who this process is, and the few collectives the loop needs.

torchrun starts one process per GPU (or per CPU worker) and tells each its place through the environment
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), read here alone. Without torchrun
every function here is a no-op for a world of one, so the training loop calls them unconditionally.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from .errors import NowcastError

# Rank 0 validates while the others wait at a barrier; a validation on a big archive can take long.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Team:
    rank: int = 0
    local_rank: int = 0
    world: int = 1
    local_world: int = 1  # processes of the team on this machine (they share its cores)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This process's part of a global batch (equal parts; rank order)."""
        part = batch_size // self.world
        return slice(self.rank * part, (self.rank + 1) * part)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise NowcastError(f"environment variable {name}={raw!r} is not an integer") from None


def team_from_environment() -> Team:
    """This process's place, as torchrun's environment variables give it (a team of one without them)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise NowcastError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return Team(rank=rank, local_rank=local, world=world, local_world=max(1, _env_int("LOCAL_WORLD_SIZE", 1)))


def process_device(team: Team, device: torch.device) -> torch.device:
    """Each process of a GPU team drives the GPU of its local rank."""
    if team.enabled and device.type == "cuda":
        if team.local_rank >= torch.cuda.device_count():
            raise NowcastError(
                f"LOCAL_RANK {team.local_rank} but only {torch.cuda.device_count()} GPU(s); start torchrun with "
                "--nproc_per_node at most the number of GPUs"
            )
        return torch.device("cuda", team.local_rank)
    return device


def join(team: Team, device: torch.device) -> bool:
    """Join the process group (NCCL on GPUs, gloo on CPU). Returns True when this call created it."""
    if not team.enabled:
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return True


def leave(created: bool) -> None:
    if created:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def sum_across(team: Team, values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (identity for a team of one)."""
    if not team.enabled:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def all_sum(team: Team, tensor: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over all processes, without gradient (a copy of it for a team of one)."""
    total = tensor.detach().clone()
    if team.enabled:
        import torch.distributed as dist

        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def barrier(team: Team) -> None:
    if team.enabled:
        import torch.distributed as dist

        dist.barrier()
