"""Data-parallel training under torchrun: which rank this is, and the few collectives used.

    torchrun --nproc-per-node 2 -m speechlstm train DATA --out runs/ddp

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training is a
single process and nothing here does anything. With them the trainer wraps
the classifier in DistributedDataParallel (NCCL on GPUs, gloo on the CPU):
every rank draws the same global, class-balanced order and takes its own
slice of each global batch, gradients are averaged by DDP, the epoch's
training loss and accuracy are summed across ranks, and every rank
validates on the whole validation split, so early stopping and "best" are
decided alike everywhere without a broadcast. Only rank 0 writes.

A rank that dies makes the others' next collective fail (gloo) or time out
(DIST_TIMEOUT_S): the survivors stop with an error naming the rank, and
torchrun ends the job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# How long a collective may wait for a silent peer before the rank gives up.
DIST_TIMEOUT_S = float(os.environ.get("SPEECHLSTM_DIST_TIMEOUT_S", "300"))


class DistributedError(ValueError):
    """A rank lost its peers; the message says which rank and why."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Ranks:
        """The ranks torchrun describes in the environment (one process when absent)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise DistributedError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
        if world < 1 or not 0 <= rank < world:
            raise DistributedError(f"RANK={rank} is not in 0..WORLD_SIZE-1 ({world})")
        return cls(rank, world, local)


SINGLE = Ranks()


def start(ranks: Ranks, device_type: str) -> None:
    """Join the process group (no-op for one process)."""
    if not ranks.enabled or dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=DIST_TIMEOUT_S))


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sum_across(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Each value summed over the ranks (the values themselves for one process)."""
    if not ranks.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    collective(ranks, dist.all_reduce, tensor)
    return tensor.tolist()


def barrier(ranks: Ranks) -> None:
    if ranks.enabled:
        collective(ranks, dist.barrier)


def collective(ranks: Ranks, fn, *args):
    """Run a collective; a lost or silent peer becomes a DistributedError."""
    try:
        return fn(*args)
    except (RuntimeError, dist.DistBackendError) as exc:
        raise DistributedError(
            f"rank {ranks.rank} of {ranks.world}: lost contact with the other ranks "
            f"({' '.join(str(exc).split())[:200]}); one of them failed or was stopped"
        ) from None
