"""Sums of hinge terms ``[u - v]_+`` over all pairs without building the pair matrix."""

import torch
from torch import Tensor


def _accumulation_dtype(t: Tensor) -> torch.dtype:
    # Prefix sums over many terms lose precision in float32; MPS has no float64.
    return t.dtype if t.device.type == "mps" else torch.float64


def sorted_with_prefix(values: Tensor) -> tuple[Tensor, Tensor]:
    """Sort the last dim and return ``(sorted, prefix)``; ``prefix[..., k] = sum(sorted[..., :k])``.

    ``+inf`` entries (padding) sort last and count as 0 in ``prefix``. ``prefix`` has one more
    column than ``sorted`` and is in float64 (except on MPS) for exact differences.
    """
    ordered = torch.sort(values, dim=-1).values
    finite = torch.where(torch.isinf(ordered), torch.zeros_like(ordered), ordered)
    cumsum = torch.cumsum(finite.to(_accumulation_dtype(values)), dim=-1)
    prefix = torch.cat([torch.zeros_like(cumsum[..., :1]), cumsum], dim=-1)
    return ordered, prefix


def count_and_sum_below(
    ordered: Tensor, prefix: Tensor, bounds: Tensor, right: bool = False
) -> tuple[Tensor, Tensor]:
    """For each bound ``u``: ``(#{v < u}, sum{v < u})`` over the sorted last dim.

    With ``right=True`` the comparison is ``v <= u``. ``ordered``/``prefix`` come from
    :func:`sorted_with_prefix`; ``bounds`` shares their leading dims (or is 1-D when they are).
    Gradients flow to both ``bounds`` (through the caller) and ``ordered`` (through ``prefix``).
    """
    counts = torch.searchsorted(
        ordered.detach().contiguous(), bounds.detach().contiguous(), right=right
    )
    sums = torch.gather(prefix, -1, counts)
    return counts, sums
