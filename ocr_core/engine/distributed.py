"""Distributed helpers. Setup comes only from torchrun's (or the PyTorchJob operator's) env.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` for each
worker process. A PyTorchJob replica started without torchrun gets ``RANK``/``WORLD_SIZE``/
``MASTER_*`` straight from the operator; both work through the ``env://`` rendezvous.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the environment (defaults: single process)."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def pick_device(device: str | None, use_gpu: bool, local_rank: int = 0) -> torch.device:
    """``Global.device`` wins; otherwise CUDA when ``use_gpu`` and available, else CPU."""
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
        return dev
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str | None = None, use_gpu: bool = True, timeout_s: float | None = None) -> DistInfo:
    """Initialise the default process group if ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA).

    Args:
        device: ``Global.device`` (see :func:`pick_device`).
        use_gpu: ``Global.use_gpu``.
        timeout_s: How long a collective waits for a peer before it fails (``Global.dist_timeout_s``);
            None keeps PyTorch's defaults (30 min gloo, 10 min NCCL). A node that powers off sends no
            TCP reset, so the survivors block this long before they fail and torchrun restarts them.
            The start-up rendezvous (every rank reaching ``MASTER_ADDR``'s store) keeps PyTorch's
            30 min whatever this is: pods of one job may start minutes apart (image pulls).
    """
    rank, world, local = env_world()
    dev = pick_device(device, use_gpu, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s) if timeout_s is not None else None
        # what init_process_group does for init_method="env://", but with the rendezvous' own timeout
        store, rank, world = next(dist.rendezvous("env://", rank, world))
        if timeout is not None:
            store.set_timeout(timeout)
        dist.init_process_group(backend=backend, store=dist.PrefixStore("default_pg", store), rank=rank,
                                world_size=world, timeout=timeout)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum a dict of floats over all ranks (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP (or the model itself)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model
