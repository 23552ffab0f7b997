"""Collectives of the fill under DDP: every rank ends with the store of all ranks.

Only ``torch.distributed``'s public collectives are used: ``all_gather_object`` for keys,
meta and labels, ``all_gather`` for the rows (padded to the longest rank, on the device
the backend works on: CPU for gloo, the current CUDA device for NCCL).
"""

from typing import Any, List

import torch
import torch.distributed as dist
from torch import Tensor

from quaterion.distributed import global_rank as rank
from quaterion.distributed import world_size

__all__ = ["rank", "world_size", "barrier", "gather_objects", "gather_rows"]


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


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(rows: Tensor) -> List[Tensor]:
    """Every rank's ``(n_r, d)`` rows tensor, on every rank (on ``rows.device``)."""
    if world_size() == 1:
        return [rows]
    device = _collective_device()
    counts = gather_objects(int(rows.shape[0]))
    longest = max(counts)
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=device)
    padded[: rows.shape[0]] = rows.to(device)
    out = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(out, padded)
    return [part[:count].to(rows.device) for part, count in zip(out, counts)]
