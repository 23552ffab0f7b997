"""Fast per-row counts of a comparison, in a reused mask buffer.

PyTorch reduces ``bool`` tensors (and shifts integers) slowly on CPU, and allocating a fresh
``(b, M)`` mask per block costs page faults. ``Workspace`` keeps one zero-padded mask;
``count_where`` writes the comparison into it and counts by summing the mask's bytes as
``int64`` words.
"""

from typing import Callable

import torch
from torch import Tensor

# Words summed per chunk: every byte lane stays <= 127, so an int64 sum never overflows.
_WORDS = 127
_PAD = 8 * _WORDS


class Workspace:
    """Owns the reusable mask buffer of one metric computation."""

    def __init__(self):
        self._mask = torch.zeros(0, 0, dtype=torch.bool)

    def mask(self, rows: int, cols: int, device: torch.device) -> Tensor:
        """bool ``(rows, padded)`` buffer whose columns past ``cols`` are False."""
        padded = -(-max(cols, 1) // _PAD) * _PAD
        if self._mask.shape != (rows, padded) or self._mask.device != device:
            self._mask = torch.zeros(rows, padded, dtype=torch.bool, device=device)
        return self._mask


def count_where(
    compare: Callable[..., Tensor], dist: Tensor, target: Tensor, workspace: Workspace
) -> Tensor:
    """``compare(dist, target).sum(1)`` as int64 ``(b,)``, e.g. ``compare=torch.lt``."""
    b, m = dist.shape
    mask = workspace.mask(b, m, dist.device)
    compare(dist, target, out=mask[:, :m])
    # Each byte lane of a chunk sum holds the count of its columns (<= 127): no carries.
    lanes = mask.view(torch.uint8).view(torch.int64).view(b, -1, _WORDS).sum(2)
    return lanes.view(torch.uint8).view(b, -1).sum(1, dtype=torch.int64)
