"""Multi-process helpers: world size, gathering rows from every rank, rank-0-only writes.

Everything here is a no-op without an initialised ``torch.distributed`` process group of
more than one rank, so single-process code paths are exactly what they were.
"""

from typing import Any, Callable, List, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def world_size() -> int:
    """Number of ranks of the default process group; 1 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_rank() -> int:
    """Rank of this process in the default process group; 0 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group of more than one rank)."""
    if world_size() > 1:
        dist.barrier()


def gather_objects(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``all_gather_object``)."""
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


def _pad_rows(tensor: Tensor, rows: int) -> Tensor:
    missing = rows - tensor.shape[0]
    if missing == 0:
        return tensor.contiguous()
    padding = tensor.new_zeros((missing, *tensor.shape[1:]))
    return torch.cat([tensor, padding]).contiguous()


class _AllGatherRows(torch.autograd.Function):
    """``all_gather`` of equally sized tensors into ``(world, rows, ...)``, differentiable.

    Backward sums every rank's gradient of the stacked result (``all_reduce``) and hands each
    rank the slice of its own rows.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_rows(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """Concatenate every rank's rows (dim 0) in rank order, on every rank.

    All ``tensors`` share their first dimension (e.g. embeddings ``(B, d)`` and groups
    ``(B,)``); ranks may hold different ``B`` (sizes are exchanged first and rows padded).
    For a tensor that requires grad, backward sums, on each rank, the gradients every rank
    computed for that rank's own rows. When every rank computes the same loss of the gathered batch, a rank's rows thus
    get ``world_size x`` their gradient, and DDP's mean over ranks turns the parameter
    gradient into exactly the single-process gradient of the concatenated batch.

    Costs one ``all_gather`` of the sizes plus one per tensor, and in backward one
    ``all_reduce`` of the gathered gradient; memory ``world_size x`` the inputs.

    Returns:
        The tensors, unchanged without a process group of more than one rank.
    """
    ranks = world_size()
    if ranks == 1 or not tensors:
        return tensors
    rows = tensors[0].shape[0]
    for tensor in tensors[1:]:
        if tensor.shape[0] != rows:
            raise ValueError(
                f"gather_rows: every tensor needs the same number of rows, got "
                f"{[tuple(t.shape) for t in tensors]}"
            )
    size = torch.tensor([rows], dtype=torch.long, device=tensors[0].device)
    sizes = [torch.zeros_like(size) for _ in range(ranks)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    longest = max(sizes)
    gathered = []
    for tensor in tensors:
        padded = _pad_rows(tensor, longest)
        if tensor.requires_grad:
            parts = _AllGatherRows.apply(padded)
        else:
            parts = [torch.empty_like(padded) for _ in range(ranks)]
            dist.all_gather(parts, padded)
        gathered.append(torch.cat([part[:n] for part, n in zip(parts, sizes)]))
    return tuple(gathered)


def on_rank_zero_then_wait(function: Callable[[], T]) -> T | None:
    """Run ``function`` on global rank 0 only, then hold every rank until it is done.

    Returns ``function()``'s result on rank 0 and ``None`` on the other ranks. Without a
    process group, simply returns ``function()``.
    """
    if world_size() == 1:
        return function()
    result = None
    try:
        if global_rank() == 0:
            result = function()
    finally:
        barrier()
    return result
