"""Which candidates are relevant to which query, kept sparse (never an N x N label matrix).

A relevance object answers ``block(start, end) -> (rows, cols, vals)``: the nonzero labels of
query rows ``start..end-1`` in coordinate form (``rows`` local to the block and sorted,
``cols`` ascending within a row, ``vals`` float).
"""

from typing import Optional

import torch
from torch import Tensor


class DenseRelevance:
    """Nonzero entries of a ready-made label matrix ``labels: (n, M)``."""

    def __init__(self, labels: Tensor):
        self.labels = labels

    def block(self, start: int, end: int) -> tuple[Tensor, Tensor, Tensor]:
        part = self.labels[start:end]
        rows, cols = part.nonzero(as_tuple=True)
        return rows, cols, part[rows, cols].to(torch.get_default_dtype())


class CsrRelevance:
    """Relevance stored per *key* (compressed rows).

    Query row ``i`` reads the entries of key ``query_keys[i]``.

    Args:
        keys: int64 ``(nnz,)`` key of each entry, values in ``[0, num_keys)``.
        cols: int64 ``(nnz,)`` candidate column of each entry.
        vals: float ``(nnz,)``.
        num_keys: number of keys.
        query_keys: int64 ``(n,)`` key read by each query row.
        exclude: optional int64 ``(n,)`` column dropped from each query's entries (its own item).
    """

    def __init__(
        self,
        keys: Tensor,
        cols: Tensor,
        vals: Tensor,
        num_keys: int,
        query_keys: Tensor,
        exclude: Optional[Tensor] = None,
    ):
        by_col = torch.argsort(cols, stable=True)
        order = by_col[torch.argsort(keys[by_col], stable=True)]
        self.cols = cols[order]
        self.vals = vals[order]
        counts = torch.bincount(keys, minlength=num_keys)
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts
        self.query_keys = query_keys
        self.exclude = exclude

    def block(self, start: int, end: int) -> tuple[Tensor, Tensor, Tensor]:
        keys = self.query_keys[start:end]
        lengths = self.counts[keys]
        local = torch.arange(keys.numel(), device=keys.device)
        rows = torch.repeat_interleave(local, lengths)
        offsets = torch.arange(rows.numel(), device=keys.device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths
        )
        entries = torch.repeat_interleave(self.starts[keys], lengths) + offsets
        cols, vals = self.cols[entries], self.vals[entries]
        if self.exclude is not None:
            keep = cols != self.exclude[start:end][rows]
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        return rows, cols, vals


def group_relevance(
    query_groups: Tensor, candidate_groups: Tensor, exclude: Optional[Tensor] = None
) -> CsrRelevance:
    """Candidates in the query's group are relevant (label 1), except the ``exclude`` column."""
    both = torch.cat([query_groups.reshape(-1), candidate_groups.reshape(-1)])
    unique, inverse = torch.unique(both, return_inverse=True)
    query_keys, candidate_keys = inverse[: query_groups.numel()], inverse[query_groups.numel() :]
    cols = torch.arange(candidate_keys.numel(), device=candidate_keys.device)
    vals = torch.ones(cols.numel(), dtype=torch.get_default_dtype(), device=cols.device)
    return CsrRelevance(candidate_keys, cols, vals, unique.numel(), query_keys, exclude)


def _raise_bad_scores(scores: Tensor, invalid: Tensor) -> None:
    """``ValueError`` naming the first NaN score, else the first infinite or negative one."""
    missing = torch.isnan(scores)
    if bool(missing.any()):  # NaN != 0 would make the pair relevant
        raise ValueError(
            f"labels contain NaN in {int(missing.sum())} of {scores.numel()} pair scores (first: "
            f"pair {int(missing.nonzero()[0, 0])}): give every pair a number (0.0 for a "
            "negative pair)"
        )
    first = int(invalid.nonzero()[0, 0])  # -1 for negatives would count as (negative) relevance
    raise ValueError(
        f"pair scores must be finite relevance values >= 0, got {float(scores[first])} for "
        f"pair {first} ({int(invalid.sum())} of {scores.numel()} scores are negative or "
        "infinite): 0.0 marks a negative pair, so map a -1 convention to 0.0"
    )


def pair_entries(labels: Tensor, pairs: Tensor, num_items: int) -> tuple[Tensor, Tensor, Tensor]:
    """Nonzero entries of the pair label matrix ``L[a, b] = L[b, a] = score`` (eval.md §2).

    Entries are written in upstream's order, all ``(a, b)`` then all ``(b, a)``, and a
    repeated position keeps the last write. Zero scores (explicit negatives) are dropped.
    ``ValueError`` for a score that is NaN, infinite or negative (reads the scores on the
    host): relevance is a finite value ``>= 0``.

    Returns:
        ``(item_rows, item_cols, vals)``, each ``(nnz,)``.
    """
    pairs = pairs.reshape(-1, 2).to(torch.int64)
    scores = labels.reshape(-1).to(torch.get_default_dtype())
    invalid = ~torch.isfinite(scores) | (scores < 0)  # NaN included: one read on the host
    if bool(invalid.any()):
        _raise_bad_scores(scores, invalid)
    rows = torch.cat([pairs[:, 0], pairs[:, 1]])
    cols = torch.cat([pairs[:, 1], pairs[:, 0]])
    vals = torch.cat([scores, scores])
    flat_sorted, order = torch.sort(rows * max(num_items, 1) + cols, stable=True)
    last = torch.ones_like(flat_sorted, dtype=torch.bool)
    last[:-1] = flat_sorted[1:] != flat_sorted[:-1]
    kept = order[last]
    kept = kept[vals[kept] != 0]
    return rows[kept], cols[kept], vals[kept]


def remap(positions: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
    """For each entry item, every position ``p`` with ``positions[p] == item``.

    Returns:
        ``(entry_index, position)`` pairs, int64 each.
    """
    order = torch.sort(positions, stable=True)
    lo = torch.searchsorted(order.values, items, side="left")
    hi = torch.searchsorted(order.values, items, side="right")
    lengths = hi - lo
    entry = torch.repeat_interleave(torch.arange(items.numel(), device=items.device), lengths)
    offsets = torch.arange(entry.numel(), device=items.device) - torch.repeat_interleave(
        torch.cumsum(lengths, 0) - lengths, lengths
    )
    return entry, order.indices[torch.repeat_interleave(lo, lengths) + offsets]
