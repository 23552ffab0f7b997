"""Ranking kernels for one block of query rows, without sorting whole rows.

Every kernel works on a block ``dist: float (b, M)`` (rows = queries, columns = candidates)
and the block's nonzero labels in coordinate form: ``rows: int64 (nnz,)`` (local row, sorted
ascending), ``cols: int64 (nnz,)``, ``vals: float (nnz,)``. Absent entries are label 0.

Order used everywhere: ascending distance, ties broken by ascending column index. This is
exactly the order of ``torch.sort(dist, dim=1, stable=True)``, so blocked results equal the
plain formulas for any block size, ties included.
"""

from typing import Callable, Optional

import torch
from torch import Tensor

# Rows with more relevant items than this are ranked by one stable sort of the row
# instead of one counting pass per relevant item.
_MAX_COUNT_LAYERS = 8
# Cells handled at once by the rare exact-tie and sort paths (bounds their temporaries:
# about 24 bytes per cell for a sort).
_CHUNK_CELLS = 2**23
# Cells compared at once by ``count_where`` (its float32 buffer: 64 MiB).
_COUNT_CELLS = 2**24


class Workspace:
    """The reusable buffer of ``count_where`` (pass one across blocks: no page faults).

    PyTorch reduces ``bool`` tensors slowly on CPU while float32 sums are vectorised, so the
    comparison writes 0/1 floats straight into this buffer, chunk of rows by chunk, and the
    rows are summed there (exact: counts stay below 2**24).
    """

    def __init__(self):
        self.buffer = torch.zeros(0)

    def rows(self, rows: int, cols: int, device: torch.device) -> Tensor:
        """float32 ``(chunk, cols)`` buffer, ``chunk <= rows``."""
        chunk = min(rows, max(1, _COUNT_CELLS // max(cols, 1)))
        if self.buffer.shape != (chunk, cols) or self.buffer.device != device:
            self.buffer = torch.empty(chunk, cols, device=device)
        return self.buffer


def count_where(
    compare: Callable[..., Tensor], dist: Tensor, target: Tensor, workspace: Workspace
) -> Tensor:
    """``compare(dist, target).sum(1)`` as int64 ``(b,)``, e.g. ``compare=torch.lt``."""
    b, m = dist.shape
    if m >= 2**24:  # float32 counts would round
        return compare(dist, target).sum(1)
    buffer = workspace.rows(b, m, dist.device)
    out = torch.empty(b, dtype=torch.int64, device=dist.device)
    for start in range(0, b, buffer.shape[0]):
        end = min(start + buffer.shape[0], b)
        part = compare(dist[start:end], target[start:end], out=buffer[: end - start])
        out[start:end] = part.sum(1)
    return out


def first_k_label_sum(dist: Tensor, rows: Tensor, cols: Tensor, vals: Tensor, k: Tensor) -> Tensor:
    """Sum of the labels of the first ``k[i]`` columns of each row, in stable order.

    Uses ``torch.topk`` values only (never its indices) to find the ``k[i]``-th smallest
    distance ``t_i``; rows whose tie group at ``t_i`` is cut by ``k[i]`` take the tied columns
    in column order.

    Args:
        dist: float ``(b, M)``.
        rows, cols, vals: nonzero labels of the block (see module docstring).
        k: int64 ``(b,)`` with ``0 <= k[i] <= M``.

    Returns:
        float64 ``(b,)``: ``sum_{rank(i, j) < k[i]} L[i, j]``.
    """
    b, m = dist.shape
    out = torch.zeros(b, dtype=torch.float64, device=dist.device)
    if rows.numel() == 0 or b == 0 or m == 0:
        return out
    k_max = int(k.max())
    if k_max == 0:
        return out
    width = min(k_max + 1, m)
    top = smallest_values(dist, width)
    has_k = k > 0
    threshold = top.gather(1, (k - 1).clamp(min=0)[:, None]).squeeze(1)
    following = top.gather(1, k.clamp(max=width - 1)[:, None]).squeeze(1)
    cut_ties = has_k & (k < m) & (following == threshold)

    rel_dist = dist[rows, cols]
    rel_threshold = threshold[rows]
    take = has_k[rows] & (rel_dist <= rel_threshold)
    if bool(cut_ties.any()):
        take = _resolve_cut_ties(dist, rows, cols, k, threshold, cut_ties, rel_dist, take)
    return out.index_add_(0, rows[take], vals[take].to(torch.float64))


def smallest_values(dist: Tensor, width: int) -> Tensor:
    """``torch.topk(dist, width, dim=1, largest=False, sorted=True).values``, exactly.

    On CPU, float32 rows without a negative value (distances: cosine, Euclidean, Manhattan)
    are ranked by their bit patterns as ``int32``, which order non-negative floats (``+inf``
    and NaN last, as ``topk`` does) like the floats themselves; torch's integer ``topk``
    skips the NaN tests of its float comparator and is about 20% faster. A row holding a
    value with the sign bit set (a negative value, ``-0.0``, a rounding just below 0) sorts
    such a value first as an integer, so ``keys[:, 0] < 0`` finds exactly those rows, and
    they are ranked again as floats.
    """
    if dist.dtype != torch.float32 or dist.device.type != "cpu" or dist.shape[1] == 0:
        return torch.topk(dist, width, dim=1, largest=False, sorted=True).values
    keys = torch.topk(dist.view(torch.int32), width, dim=1, largest=False, sorted=True).values
    values = keys.view(torch.float32)
    signed = keys[:, 0] < 0
    if bool(signed.any()):  # CPU tensors only (checked above): no device to wait for
        rows = signed.nonzero().squeeze(1)
        values[rows] = torch.topk(dist[rows], width, dim=1, largest=False, sorted=True).values
    return values


def _resolve_cut_ties(
    dist: Tensor,
    rows: Tensor,
    cols: Tensor,
    k: Tensor,
    threshold: Tensor,
    cut_ties: Tensor,
    rel_dist: Tensor,
    take: Tensor,
) -> Tensor:
    """Redo ``take`` for rows whose ties at the threshold exceed ``k``: stable tie order."""
    tie_rows = cut_ties.nonzero().squeeze(1)
    in_tie = cut_ties[rows].nonzero().squeeze(1)  # label entries that sit in such rows
    early = torch.zeros(rows.numel(), dtype=torch.bool, device=rows.device)
    position = torch.full_like(k, -1)
    for chunk in _row_chunks(tie_rows, dist.shape[1]):
        sub = dist[chunk]
        sub_threshold = threshold[chunk][:, None]
        need = k[chunk] - (sub < sub_threshold).sum(1)
        equal = sub == sub_threshold
        ties_before = equal.cumsum(1, dtype=torch.int32) - equal.to(torch.int32)
        position.fill_(-1)
        position[chunk] = torch.arange(chunk.numel(), device=k.device)
        here = in_tie[position[rows[in_tie]] >= 0]
        local = position[rows[here]]
        early[here] = ties_before[local, cols[here]] < need[local]
    tie_dist, tie_threshold = rel_dist[in_tie], threshold[rows[in_tie]]
    take = take.clone()
    take[in_tie] = (tie_dist < tie_threshold) | ((tie_dist == tie_threshold) & early[in_tie])
    return take


def _row_chunks(row_ids: Tensor, num_cols: int) -> list[Tensor]:
    """Split ``row_ids`` so each chunk's ``(rows, num_cols)`` temporaries stay near ``_CHUNK_CELLS``."""
    step = max(1, _CHUNK_CELLS // max(num_cols, 1))
    return list(torch.split(row_ids, step))


def incidence_ranks(
    dist: Tensor, rows: Tensor, cols: Tensor, workspace: Optional[Workspace] = None
) -> Tensor:
    """0-based stable rank of column ``cols[t]`` within row ``rows[t]``.

    ``rank = #{j' : d[j'] < d[j]} + #{j' < j : d[j'] == d[j]}``: the position of ``j`` in
    ``torch.sort(dist[i], stable=True)``.

    Args:
        dist: float ``(b, M)``.
        rows: int64 ``(nnz,)`` sorted ascending; cols: int64 ``(nnz,)``.
        workspace: reusable mask buffer (pass one across blocks to avoid reallocations).

    Returns:
        int64 ``(nnz,)``.
    """
    if rows.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=dist.device)
    workspace = Workspace() if workspace is None else workspace
    counts = torch.bincount(rows, minlength=dist.shape[0])
    most = int(counts.max())
    if most == 1:  # the pair case: one relevant item per row
        return _ranks_by_count(dist, rows, cols, workspace)
    if most > _MAX_COUNT_LAYERS:
        return _ranks_by_sort(dist, rows, cols)
    layer = (
        torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    )
    ranks = torch.empty_like(rows)
    for t in range(most):
        chosen = (layer == t).nonzero().squeeze(1)
        ranks[chosen] = _ranks_by_count(dist, rows[chosen], cols[chosen], workspace)
    return ranks


def _ranks_by_count(dist: Tensor, rows: Tensor, cols: Tensor, workspace: Workspace) -> Tensor:
    """Stable ranks when every row appears at most once in ``rows``: two counting passes."""
    target = torch.full((dist.shape[0], 1), float("nan"), dtype=dist.dtype, device=dist.device)
    target[rows, 0] = dist[rows, cols]
    ranks = count_where(torch.lt, dist, target, workspace)[rows]
    tied = (count_where(torch.eq, dist, target, workspace)[rows] > 1).nonzero().squeeze(1)
    columns = torch.arange(dist.shape[1], device=dist.device)[None, :]
    for chunk in _row_chunks(tied, dist.shape[1]):
        equal = dist[rows[chunk]] == target[rows[chunk]]
        ranks[chunk] += (equal & (columns < cols[chunk][:, None])).sum(1)
    return ranks


def _ranks_by_sort(dist: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Stable ranks from one stable sort per involved row (rows with many relevant items)."""
    ranks = torch.empty_like(rows)
    for chunk in _row_chunks(torch.unique_consecutive(rows), dist.shape[1]):
        order = torch.sort(dist[chunk], dim=1, stable=True).indices
        rank_of_col = torch.empty_like(order)
        positions = torch.arange(order.shape[1], device=dist.device).expand_as(order)
        rank_of_col.scatter_(1, order, positions)
        position = torch.full((dist.shape[0],), -1, dtype=torch.int64, device=dist.device)
        position[chunk] = torch.arange(chunk.numel(), device=dist.device)
        here = (position[rows] >= 0).nonzero().squeeze(1)
        ranks[here] = rank_of_col[position[rows[here]], cols[here]]
    return ranks
