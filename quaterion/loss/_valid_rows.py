"""Losses over rows gathered with padding: which rows and pairs are real, and means over them.

:func:`quaterion.distributed.gather_rows_padded` returns every rank's rows padded to one
capacity and a bool mask ``valid`` of the real ones, computed on the device. A loss keeps
padded rows out of its pairs (never an anchor, a positive or a negative) and out of the
counts its means divide by, so its value equals the loss of the real rows alone. All of it
with fixed shapes (``torch.where``, no boolean indexing), so nothing waits for the device.
``valid=None`` means every row is real: the unmasked computation, unchanged.
"""

import functools
import inspect
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from quaterion.utils.utils import get_anchor_negative_mask, get_anchor_positive_mask

#: ``(real anchors (A,), real candidates (M,))`` of a pair loss, each a bool tensor or
#: ``None`` (all real); ``None`` itself: every row is real.
ValidRows = Optional[Tuple[Optional[Tensor], Optional[Tensor]]]


def real_pairs(mask: Tensor, valid: Optional[Tensor], ref_valid: Optional[Tensor]) -> Tensor:
    """``mask (A, M)`` restricted to pairs of a real anchor row and a real candidate column.

    Args:
        mask: bool ``(A, M)`` pair mask (positives, negatives).
        valid: bool ``(A,)`` real anchors, or ``None`` (all real).
        ref_valid: bool ``(M,)`` real candidates, or ``None`` (all real).
    """
    if valid is not None:
        mask = mask & valid[:, None]
    if ref_valid is not None:
        mask = mask & ref_valid[None, :]
    return mask


def pair_masks(q_groups: Tensor, r_groups: Tensor, valid: ValidRows) -> Tuple[Tensor, Tensor]:
    """``(positive, negative)`` bool ``(A, M)`` masks of
    ``get_anchor_positive_mask(q_groups, r_groups)`` / ``get_anchor_negative_mask``, with
    every pair that involves a padded row (see ``valid``) removed from both."""
    positive = get_anchor_positive_mask(q_groups, r_groups)
    negative = get_anchor_negative_mask(q_groups, r_groups)
    if valid is None:
        return positive, negative
    return real_pairs(positive, *valid), real_pairs(negative, *valid)


def check_row_mask(name: str, mask: object, rows: Tensor) -> None:
    """Raise unless ``mask`` is ``None`` or a bool ``(len(rows),)`` tensor on ``rows``'
    device (metadata only: nothing is read from the device)."""
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(
            f"`{name}` must be a bool torch.Tensor marking the real rows, got {got}; "
            f"pass `{name}.bool()` or None (every row real)."
        )
    if mask.shape != rows.shape[:1] or mask.device != rows.device:
        raise ValueError(
            f"`{name}` must have shape ({rows.shape[0]},) on {rows.device}, one flag per "
            f"row, got shape {tuple(mask.shape)} on {mask.device}."
        )


def check_square_mask(owner: str, valid: Optional[Tensor], ref_groups: Optional[Tensor]) -> None:
    """Raise ``ValueError`` when a row mask ``valid`` comes with separate references: it
    marks the rows of one square batch (``ref_groups=None``) only."""
    if valid is not None and ref_groups is not None:
        raise ValueError(
            f"{owner}: `valid` marks the rows of one batch compared with itself; it cannot "
            "be combined with `ref_groups`. Pass ref_groups=None, or valid=None."
        )


def real_mean(values: Tensor, valid: Optional[Tensor]) -> Tensor:
    """Mean of ``values (B,)`` over the real rows (``values.mean()`` when ``valid`` is
    ``None``); 0 (attached to the graph) without real rows, an empty ``values``
    included. Padded entries may hold anything finite or not: they are selected away,
    never multiplied."""
    if valid is None:
        return values.mean() if values.numel() else values.sum()
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / valid.sum().clamp(min=1).to(values.dtype)


def real_max(values: Tensor, ref_valid: Optional[Tensor], dim: int = 1) -> Tensor:
    """``values.max(dim, keepdim=True)`` over the real candidates (columns) only."""
    if ref_valid is not None:
        values = values.masked_fill(~ref_valid[None, :], float("-inf"))
    return values.max(dim=dim, keepdim=True).values


@functools.lru_cache(maxsize=None)
def takes_row_masks(method: Callable) -> bool:
    """Whether ``method`` (an ``xbm_loss`` or ``_memory_loss``, as found on the class)
    accepts the keyword arguments ``valid`` and ``memory_valid`` (an override with the
    spec's four arguments does not). Cached per function: it is asked at every step."""
    parameters = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    return "valid" in parameters and "memory_valid" in parameters
