"""Which corpus items are each query's positives, block by block of queries.

Two forms: :class:`PairPositives` lists ``(query, corpus item)`` pairs (pair data: each
anchor's positive(s)); :class:`GroupPositives` compares group ids (group data: every item of
the query's group). Both implement ``exclude(scores, start, own)``: compute each query's
positive score (the lowest, as margins use it), then set positives and the query's own item
to ``-inf`` so they never rank as negatives.
"""

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

INF = float("inf")


def _own_cells(scores: Tensor, own: Optional[Tensor], value: float) -> None:
    """``scores[i, own[i]] = value`` for rows with ``own[i] >= 0``."""
    if own is not None:
        rows = torch.arange(scores.shape[0], device=scores.device)
        has_own = own >= 0
        scores[rows[has_own], own[has_own]] = value


class PairPositives:
    """Positives as coordinates: query ``rows[p]`` has corpus item ``cols[p]`` (rows sorted)."""

    def __init__(self, rows: Tensor, cols: Tensor):
        order = torch.argsort(rows, stable=True)
        self.rows, self.cols = rows[order], cols[order]

    @classmethod
    def from_lists(
        cls, positives: Sequence[Union[int, Sequence[int]]], num_queries: int, corpus_size: int
    ) -> "PairPositives":
        """From one corpus index (or a sequence of them) per query; checked against sizes."""
        if len(positives) != num_queries:
            raise ValueError(
                f"positives has {len(positives)} entries for {num_queries} queries: give one "
                "corpus index (or a list of them) per query."
            )
        rows, cols = [], []
        for query, entry in enumerate(positives):
            if _is_int_like(entry):
                items = [entry]
            elif isinstance(entry, (str, bytes)) or not hasattr(entry, "__iter__"):
                raise TypeError(
                    f"positives[{query}] must be a corpus index or a list of them, got "
                    f"{type(entry).__name__} {entry!r}."
                )
            else:
                items = list(entry)
            for item in items:
                if not _is_int_like(item) or not 0 <= int(item) < corpus_size:
                    raise ValueError(
                        f"positives[{query}] holds {item!r}: positives are corpus indices in "
                        f"[0, {corpus_size})."
                    )
                rows.append(query)
                cols.append(int(item))
        return cls(torch.tensor(rows, dtype=torch.int64), torch.tensor(cols, dtype=torch.int64))

    def items_of(self, query: int) -> list[int]:
        """The corpus indices of one query's positives."""
        lo, hi = torch.searchsorted(self.rows, torch.tensor([query, query + 1])).tolist()
        return self.cols[lo:hi].tolist()

    def max_count(self) -> int:
        """The most positives any query has."""
        return int(torch.bincount(self.rows).max()) if self.rows.numel() else 0

    def padded(self, start: int, count: int) -> Tensor:
        """int64 ``(count, P)``: the positive columns of query rows ``start..start + count``,
        each row padded with ``-1`` to the most positives among them (``P >= 1``)."""
        lo, hi = torch.searchsorted(self.rows, torch.tensor([start, start + count])).tolist()
        rows, cols = self.rows[lo:hi] - start, self.cols[lo:hi]
        counts = torch.bincount(rows, minlength=count)
        width = max(1, int(counts.max())) if hi > lo else 1
        slots = torch.arange(hi - lo) - (torch.cumsum(counts, 0) - counts)[rows]
        table = torch.full((count, width), -1, dtype=torch.int64)
        table[rows, slots] = cols
        return table

    def exclude(
        self, scores: Tensor, start: int, own: Optional[Tensor], need_score: bool = True
    ) -> Tensor:
        """Positive scores of query rows ``start..`` (``+inf`` if none); positives and own
        items set to ``-inf`` in ``scores`` (the score is cheap here: ``need_score`` unused)."""
        b = scores.shape[0]
        bounds = torch.tensor([start, start + b])
        lo, hi = torch.searchsorted(self.rows, bounds).tolist()
        rows = (self.rows[lo:hi] - start).to(scores.device)
        cols = self.cols[lo:hi].to(scores.device)
        positive = torch.full((b,), INF, dtype=scores.dtype, device=scores.device)
        positive.scatter_reduce_(0, rows, scores[rows, cols], reduce="amin")
        scores[rows, cols] = -INF
        _own_cells(scores, own, -INF)
        return positive


class GroupPositives:
    """Positives by group: query ``i`` matches every corpus item of group ``groups[i]``."""

    def __init__(self, groups: Tensor, corpus_groups: Tensor):
        self.groups, self.corpus_groups = groups, corpus_groups

    def exclude(
        self, scores: Tensor, start: int, own: Optional[Tensor], need_score: bool = True
    ) -> Tensor:
        """As :meth:`PairPositives.exclude`; the own item is not a positive of itself."""
        groups = self.groups[start : start + scores.shape[0]].to(scores.device)
        same = groups[:, None] == self.corpus_groups.to(scores.device)[None, :]
        positive = torch.full((scores.shape[0],), INF, dtype=scores.dtype, device=scores.device)
        if need_score:
            _own_cells(scores, own, INF)
            positive = torch.where(same, scores, INF).amin(dim=1)
        scores.masked_fill_(same, -INF)
        _own_cells(scores, own, -INF)
        return positive


def _is_int_like(value: object) -> bool:
    """An int, a numpy integer or a 0-d integer tensor (never a bool)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, Tensor):
        return value.dim() == 0 and not value.is_floating_point() and value.dtype != torch.bool
    if getattr(value, "ndim", 0) != 0:  # a numpy array of one element has __index__ too
        return False
    return hasattr(value, "__index__")


def as_group_ids(groups: Any, size: int, name: str) -> Tensor:
    """``groups`` as int64 ``(size,)`` group ids (a tensor, an array or a list of ints);
    ``TypeError`` / ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(groups, Tensor):
        array = np.asarray(groups)
        if array.size and array.dtype.kind not in "iub":  # torch holds no str / objects
            raise TypeError(
                f"{name} must be integer group ids, got {array.dtype} values (e.g. "
                f"{array.reshape(-1)[:1].tolist()}); map labels to ints first, e.g. "
                "numpy.unique(labels, return_inverse=True)[1]."
            )
        groups = torch.as_tensor(array)
    if groups.dim() != 1 or groups.shape[0] != size:
        raise ValueError(
            f"{name} must hold one group id per item ({size}), got shape {tuple(groups.shape)}."
        )
    if groups.is_floating_point() or groups.dtype == torch.bool:
        raise TypeError(f"{name} must be integer group ids, got dtype {groups.dtype}.")
    return groups.to(torch.int64)
