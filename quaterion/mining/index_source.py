"""Mining against a ``SimilarityIndex``: its stored vectors are searched, never re-encoded."""

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from quaterion.mining.mined import MinedNegatives
from quaterion.mining.options import MiningOptions
from quaterion.mining.scores import pair_scores
from quaterion.mining.selection import NEG_INF, drop_filtered, select_negatives

# Queries searched per request.
QUERY_BATCH = 256
# Qdrant reports distances (lower is closer) for these; mining turns them into 1 / (1 + d).
_DISTANCE_SCORED = ("euclidean", "manhattan")


def check_query_model(index: Any, model: Any) -> None:
    """Refuse a ``model`` other than the servable ``index`` was built with: its query vectors
    would be compared with vectors of another model (a silently wrong mining).

    Raises:
        ModelMismatchError: the fingerprints differ (names both models and the fix).
    """
    from quaterion_models.index import ModelMismatchError, servable_fingerprint
    from quaterion_models.index.fingerprint import describe

    if model is getattr(index, "model", None):
        return
    fingerprint = servable_fingerprint(model)
    if fingerprint != index.info.fingerprint:
        raise ModelMismatchError(
            f"model= is {describe(model)} (fingerprint {fingerprint}), but the index "
            f"{index.backend.location} holds vectors of model {index.info.fingerprint} "
            f"({index.info.model}): queries encoded by another model cannot be compared with "
            "them. Pass model=index.model (the servable the index was built with), or build "
            "the index with this model"
        )


def mine_from_index(
    index: Any,
    queries: Tensor,
    positives: Sequence[Union[int, Sequence[int]]],
    options: MiningOptions,
    exact: bool,
    hnsw_ef: Optional[int],
    show_progress: bool,
) -> MinedNegatives:
    """:func:`mine_hard_negatives` with the index as the corpus (integer point ids).

    Each query is searched for ``window_end + its positives`` hits; a query left short by
    the filters while the index has more points is searched again with twice the limit,
    so the result equals exact mining whenever the search itself is exact.
    """
    from quaterion.mining.hard_negatives import random_keys

    n = queries.shape[0]
    if len(positives) != n:
        raise ValueError(f"positives has {len(positives)} entries for {n} queries.")
    positive_ids = [_id_list(entry, query) for query, entry in enumerate(positives)]
    positive = torch.full((n,), float("inf"))
    if options.uses_positive_score:
        positive = _positive_scores(index, queries, positive_ids)
    else:  # a positive id the index lacks is a wrong id, not "no positive"
        _check_stored(index, sorted(set().union(*positive_ids)))
    total = index.count()
    keys = random_keys(n, options, torch.device("cpu"), total)
    indices = torch.empty(n, options.num_negatives, dtype=torch.int64)
    scores = torch.empty(n, options.num_negatives)
    vectors = queries.detach().cpu().numpy().astype(np.float32)
    bar = tqdm(total=n, desc="Mining negatives", disable=not show_progress)
    with bar:
        for start in range(0, n, QUERY_BATCH):
            end = min(start + QUERY_BATCH, n)
            block, ids = _search_until_enough(
                index,
                vectors[start:end],
                positive_ids[start:end],
                positive[start:end],
                options,
                exact,
                hnsw_ef,
                total,
            )
            block_keys = None if keys is None else keys[start:end]
            indices[start:end], scores[start:end] = select_negatives(
                block, options, block_keys, ids
            )
            bar.update(end - start)
    return MinedNegatives(indices, scores, positive if options.uses_positive_score else None)


def _search_until_enough(
    index: Any,
    vectors: np.ndarray,
    positive_ids: list[set],
    positive: Tensor,
    options: MiningOptions,
    exact: bool,
    hnsw_ef: Optional[int],
    total: int,
) -> tuple[Tensor, Tensor]:
    """``(scores, ids)`` of shape ``(b, L)`` with positives and filtered hits at ``-inf``."""
    rows = list(range(len(vectors)))
    found: list[tuple[list[float], list[int]]] = [([], [])] * len(vectors)
    limit = options.window_end + max((len(p) for p in positive_ids), default=0)
    while rows:
        limit = max(1, min(limit, total))
        hits = index.search(
            vectors=vectors[rows], limit=limit, exact=exact, hnsw_ef=hnsw_ef, with_payload=False
        )
        short = []
        for row, row_hits in zip(rows, hits):
            row_scores, row_ids = _filtered(
                row_hits, positive_ids[row], positive[row], index.distance, options
            )
            found[row] = (row_scores, row_ids)
            alive = sum(score != NEG_INF for score in row_scores)
            if alive < options.window_end and len(row_hits) == limit and limit < total:
                short.append(row)
        rows, limit = short, limit * 2
    width = max(1, max(len(ids) for _, ids in found))
    scores = torch.full((len(vectors), width), NEG_INF)
    ids = torch.full((len(vectors), width), -1, dtype=torch.int64)
    for row, (row_scores, row_ids) in enumerate(found):
        scores[row, : len(row_scores)] = torch.tensor(row_scores, dtype=scores.dtype)
        ids[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.int64)
    return scores, ids


def _filtered(
    hits: list, positives: set, positive: Tensor, distance: str, options: MiningOptions
) -> tuple[list[float], list[int]]:
    """Scores (mining scale) and ids of one query's hits, positives and filtered at ``-inf``."""
    ids = []
    for hit in hits:
        if not isinstance(hit.id, int):
            raise TypeError(
                f"Mining with an index needs integer point ids (corpus positions); found "
                f"{hit.id!r}. Add the corpus with ids=range(len(corpus))."
            )
        ids.append(hit.id)
    raw = torch.tensor([hit.score for hit in hits], dtype=torch.float32)
    if distance in _DISTANCE_SCORED:
        raw = 1 / (1 + raw)
    raw[[i for i, point in enumerate(ids) if point in positives]] = NEG_INF
    if options.filters:
        drop_filtered(raw[None, :], positive.reshape(1), options)
    return raw.tolist(), ids


def _stored_vectors(index: Any, ids: list[int]) -> np.ndarray:
    """``index.vectors(ids)``; ``KeyError`` naming the first id the index does not hold."""
    try:
        return index.vectors(ids)
    except ValueError as error:
        raise KeyError(f"positive point ids not in the index: {error}") from None


def _check_stored(index: Any, ids: list[int], chunk: int = 4096) -> None:
    """``KeyError`` unless the index holds every id (read a chunk at a time, not kept)."""
    for start in range(0, len(ids), chunk):
        _stored_vectors(index, ids[start : start + chunk])


def _positive_scores(index: Any, queries: Tensor, positive_ids: list[set]) -> Tensor:
    """Lowest score of each query's positives, their vectors read from the index."""
    wanted = sorted(set().union(*positive_ids))
    table = torch.as_tensor(_stored_vectors(index, wanted)) if wanted else None
    vectors = {point_id: table[row] for row, point_id in enumerate(wanted)}
    positive = torch.full((queries.shape[0],), float("inf"))
    for query, ids in enumerate(positive_ids):
        if ids:
            stacked = torch.stack([vectors[i] for i in sorted(ids)])
            row = queries[query].float().cpu().expand(len(ids), -1)
            positive[query] = pair_scores(index.distance, row, stacked).min()
    return positive


def _id_list(entry: Any, query: int) -> set:
    """One query's positive point ids as a set of ints."""
    if isinstance(entry, (int, np.integer)):
        items = [entry]
    elif isinstance(entry, (str, bytes)) or not hasattr(entry, "__iter__"):
        raise TypeError(f"positives[{query}] must be integer point ids, got {entry!r}.")
    else:
        items = list(entry)
    if any(isinstance(item, bool) or not isinstance(item, (int, np.integer)) for item in items):
        raise TypeError(f"positives[{query}] must be integer point ids, got {entry!r}.")
    return {int(item) for item in items}
