"""Minimal torchrun/DDP helpers shared by the training loops.

``torchrun --nproc_per_node N stages/train_x.py ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.
:func:`dist_env` reads them (single process when absent), :func:`init_distributed` starts the process
group (``gloo`` on CPU, ``nccl`` on CUDA) once, and :func:`is_main` tells which process may write files
(rank 0 only, so the same stage runs unchanged under DVC or torchrun).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Rank information from the torchrun environment variables (defaults: one process)."""
    def _int(name: str, default: int) -> int:
        raw = os.environ.get(name, "")
        return int(raw) if raw.strip() else default

    return DistEnv(rank=_int("RANK", 0), world_size=_int("WORLD_SIZE", 1), local_rank=_int("LOCAL_RANK", 0))


def init_distributed(env: DistEnv, device: torch.device) -> None:
    """Initialise the default process group when running under torchrun (no-op for one process)."""
    if not env.distributed or (dist.is_available() and dist.is_initialized()):
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


def is_main() -> bool:
    return dist_env().is_main


def device_for(env: DistEnv, name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda:<LOCAL_RANK>`` when CUDA is present, else CPU; explicit names are kept."""
    from lus.runtime import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", env.local_rank)
    return device


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a short list of floats over all ranks (identity for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """All ranks' ``obj`` in rank order (``[obj]`` for one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
