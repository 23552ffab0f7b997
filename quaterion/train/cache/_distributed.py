"""Collectives of the fill under DDP: every rank ends with the store of all ranks.

Only ``torch.distributed``'s public collectives are used: ``all_gather_object`` for keys,
meta and labels, :func:`quaterion.distributed.gather_rows` for the rows (on the device the
backend works on: CPU for gloo, the current CUDA device for NCCL).
"""

from typing import Any, List

import torch
import torch.distributed as dist

from quaterion.distributed import global_rank as rank
from quaterion.distributed import world_size

__all__ = ["rank", "world_size", "barrier", "gather_objects", "collective_device"]


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if world_size() > 1:
        dist.barrier()


def gather_objects(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if world_size() == 1:
        return [obj]
    out: List[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def collective_device() -> torch.device:
    """Where tensors of a collective live: the current CUDA device for NCCL, else CPU."""
    if world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
