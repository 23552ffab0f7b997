"""Row indices of a host store (``CacheType.CPU`` / ``DISK``) that stay on the host."""

from typing import Any, Optional

import torch
from torch import Tensor


class HostRows:
    """``int64`` store rows of a batch, kept in host memory while the batch moves.

    Lightning moves a batch with ``.to(device)``; this object records only the device the
    gathered rows must reach. A store in host memory then gathers its rows on the host and
    copies them to that device (from pinned memory, ``non_blocking``), so no step copies the
    indices to the device and back, or waits for the device.

    Args:
        rows: ``int64 (B,)`` CPU tensor of store rows.
        device: where the gathered rows go (default the CPU).
    """

    def __init__(self, rows: Tensor, device: Optional[torch.device] = None):
        self.rows = rows
        self.device = torch.device(device if device is not None else "cpu")

    def to(self, device: Any, *args: Any, **kwargs: Any) -> "HostRows":
        """Same rows, bound for ``device`` (the indices themselves stay on the host)."""
        return HostRows(self.rows, torch.device(device))

    def __len__(self) -> int:
        return len(self.rows)

    def __eq__(self, other: Any) -> bool:
        rows = other.rows if isinstance(other, HostRows) else other
        return isinstance(rows, Tensor) and torch.equal(self.rows, rows.cpu())

    def __repr__(self) -> str:
        return f"HostRows({self.rows.tolist()}, device={self.device})"


def gather_to(store: Tensor, rows: Tensor, device: torch.device) -> Tensor:
    """``store[rows]`` (both on the host) on ``device``: through a pinned buffer and a
    ``non_blocking`` copy when ``device`` is a CUDA device, so the host does not wait."""
    if device.type == "cuda":
        out = torch.empty((rows.shape[0], *store.shape[1:]), dtype=store.dtype, pin_memory=True)
        torch.index_select(store, 0, rows, out=out)
        return out.to(device, non_blocking=True)
    return store.index_select(0, rows).to(device)
