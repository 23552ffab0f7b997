"""Ranked neighbour lists (from an index) as row blocks for the ``eval.blocks`` reducers.

An index returns, per query, its ``depth`` nearest items closest first. For a block of ``b``
queries, :func:`neighbour_block` lays them out as a ``Block`` whose columns are *slots*, not
items, so the exact reducers compute the metrics from ranks alone:

* columns ``0..depth-1``: the ranked neighbours, distance = rank (strictly increasing; a slot
  the index left empty is never relevant);
* ``fill`` columns, distances ``depth, depth + 1, ...``, never relevant: they stand for the
  unknown items just below ``depth``, so a query that needs more than ``depth`` positions
  (R-precision with ``R > depth``) reads misses there;
* one column per relevant item the index did not return ("hidden"), distance ``+inf``:
  the relevance total of the row stays exact and such an item never counts as found.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from quaterion.eval.blocks import Block


class NeighbourBlock(NamedTuple):
    """A block over slots and, per incidence in block order, whether it was hidden."""

    block: Block
    hidden: Tensor


def neighbour_block(
    neighbours: Tensor, rows: Tensor, cols: Tensor, vals: Tensor, num_items: int, fill: int
) -> NeighbourBlock:
    """Block of ``b`` queries from their neighbour lists and their relevance.

    Args:
        neighbours: int64 ``(b, depth)`` item ids, closest first; ``-1`` pads short lists.
        rows, cols, vals: the queries' nonzero labels (local row, item id, value), rows
            ascending.
        num_items: number of items (ids are ``0..num_items-1``).
        fill: number of filler columns after the ranked ones.

    Returns:
        the block (incidences ordered by row, then column = rank order) and a bool
        ``(nnz,)`` marking the incidences the lists did not reach.
    """
    b, depth = neighbours.shape
    stride = num_items + 1
    slot_keys = (torch.arange(b)[:, None] * stride + neighbours + 1).reshape(-1)
    order = torch.argsort(slot_keys)
    sorted_keys = slot_keys[order]
    keys = rows * stride + cols + 1
    at = torch.searchsorted(sorted_keys, keys).clamp(max=max(sorted_keys.numel() - 1, 0))
    found = sorted_keys[at] == keys if sorted_keys.numel() else torch.zeros_like(keys, dtype=bool)
    hidden = ~found
    # the j-th hidden incidence of a row goes to column depth + fill + j
    hidden_rows = rows[hidden]
    per_row = torch.bincount(hidden_rows, minlength=b)
    first = torch.cumsum(per_row, 0) - per_row
    within = torch.arange(hidden_rows.numel()) - first[hidden_rows]
    slots = torch.empty_like(cols)
    slots[found] = order[at[found]] % depth
    slots[hidden] = depth + fill + within
    width = depth + fill + (int(per_row.max()) if b else 0)
    dist = torch.full((b, width), float("inf"))
    dist[:, : depth + fill] = torch.arange(depth + fill, dtype=dist.dtype)  # no ties to resolve
    sequence = torch.argsort(rows * width + slots)
    block = Block(dist, rows[sequence], slots[sequence], vals[sequence])
    return NeighbourBlock(block, hidden[sequence])
