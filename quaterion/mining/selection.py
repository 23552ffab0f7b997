"""The functional core of mining: from a block of candidate scores to chosen negatives.

Every function works on ``scores: float (b, L)`` for ``b`` queries (``L`` candidates each, the
whole corpus in exact mode or the hits of an index search), where excluded candidates
(positives, the query itself, padding) already hold ``-inf``. Chosen negatives come back as
``columns: int64 (b, num_negatives)`` (``-1`` where a query has too few survivors) and their
``scores`` (``-inf`` there).
"""

from typing import Optional

import torch
from torch import Tensor

from quaterion.mining.options import MiningOptions

NEG_INF = float("-inf")
# Columns per chunk of ``top_k``'s first pass (one maximum per chunk).
CHUNK = 32


def top_k(scores: Tensor, k: int, chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """``torch.topk(scores, k, dim=1)`` (values sorted, highest first) in two cheap passes.

    The ``k`` highest entries of a row lie in the ``k`` chunks of ``chunk`` columns with the
    highest maxima (any entry outside them has ``k`` chunk maxima at least as high), so
    only those chunks (and the columns past the last whole chunk) are ranked; the result
    equals ``torch.topk`` up to the order of equal scores. Any totally ordered dtype works
    (integers too).
    """
    b, length = scores.shape
    whole = (length // chunk) * chunk
    if whole // chunk <= 4 * k:
        return torch.topk(scores, k, dim=1)
    maxima = scores[:, :whole].view(b, whole // chunk, chunk).amax(dim=2)
    chunks = torch.topk(maxima, k, dim=1).indices
    offsets = torch.arange(chunk, device=scores.device)
    columns = (chunks[:, :, None] * chunk + offsets).reshape(b, -1)
    if whole < length:
        tail = torch.arange(whole, length, device=scores.device).expand(b, -1)
        columns = torch.cat([columns, tail], dim=1)
    values, local = torch.topk(scores.gather(1, columns), k, dim=1)
    return values, columns.gather(1, local)


def drop_filtered(scores: Tensor, positive_score: Tensor, options: MiningOptions) -> Tensor:
    """Set candidates that fail a margin or a score bound to ``-inf`` in place.

    ``positive_score: (b,)`` is the lowest score among each query's positives (``+inf`` for a
    query without positives: no margin applies). A candidate ``s`` is dropped when
    ``s + absolute_margin > positive``, when ``s > positive - |positive| * relative_margin``,
    when ``s > max_score`` or when ``s < min_score`` (the definitions of
    sentence-transformers' ``mine_hard_negatives``).
    """
    positive = positive_score[:, None]
    if options.absolute_margin is not None:
        scores.masked_fill_((scores + options.absolute_margin) > positive, NEG_INF)
    if options.relative_margin is not None:
        threshold = positive - positive.abs() * options.relative_margin
        threshold = torch.where(torch.isinf(positive), positive, threshold)
        scores.masked_fill_(scores > threshold, NEG_INF)
    if options.max_score is not None:
        scores.masked_fill_(scores > options.max_score, NEG_INF)
    if options.min_score is not None:
        scores.masked_fill_(scores < options.min_score, NEG_INF)
    return scores


def select_negatives(
    scores: Tensor,
    options: MiningOptions,
    keys: Optional[Tensor] = None,
    columns: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """The window of survivor ranks and the negatives chosen from it.

    Args:
        scores: float ``(b, L)``, excluded and filtered candidates at ``-inf``.
        options: the controls; ``options.window_end`` survivor ranks are read.
        keys: float ``(b, window_end - range_min)`` uniform draws, one per window slot
            (``sampling="random"`` only): the slots with the lowest keys are taken.
        columns: int64 ``(b, L)`` candidate ids (default: the column index).

    Returns:
        ``(columns, scores)``, each ``(b, num_negatives)``, best score first.
    """
    b, length = scores.shape
    count = options.num_negatives
    top_scores, top_columns = top_k(scores, min(options.window_end, length))
    if columns is not None:
        top_columns = columns.gather(1, top_columns)
    window_scores = top_scores[:, options.range_min :]
    window_columns = top_columns[:, options.range_min :]
    if options.sampling == "random":
        width = window_scores.shape[1]
        draws = keys[:, :width].masked_fill(torch.isneginf(window_scores), float("inf"))
        chosen = torch.topk(draws, min(count, width), dim=1, largest=False).indices
        window_scores, order = window_scores.gather(1, chosen).sort(dim=1, descending=True)
        window_columns = window_columns.gather(1, chosen).gather(1, order)
    window_scores = window_scores[:, :count]
    window_columns = window_columns[:, :count].masked_fill(torch.isneginf(window_scores), -1)
    missing = count - window_scores.shape[1]
    if missing > 0:
        window_scores = torch.cat([window_scores, scores.new_full((b, missing), NEG_INF)], 1)
        window_columns = torch.cat([window_columns, window_columns.new_full((b, missing), -1)], 1)
    return window_columns, window_scores
