"""Retrieval metrics with neighbours from a Qdrant index instead of the exact blocked pass.

For collections too large for :class:`~quaterion.eval.evaluator.Evaluator`, the dataset is
indexed into a :class:`~quaterion_models.index.SimilarityIndex` and each query reads only
its ``depth`` nearest neighbours from the index. The report states the approximation: the
recall of the index's top-k against exact top-k on a sample of queries, and how many
relevant items fell below ``depth``. With ``exact=True`` and a ``depth`` that covers every
relevant item, the values equal the exact ``Evaluator``'s (equal distances rank by item
number on both paths; distances equal only before float32 rounding, e.g. the cosine of
parallel vectors, may be ordered differently).
"""

import random
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from quaterion.distances import Distance
from quaterion.eval.base_metric import BaseMetric
from quaterion.eval.blocks import BlockReducer
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.neighbour_blocks import neighbour_block
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.pair.retrieval_reciprocal_rank import ReciprocalRankReducer
from quaterion.eval.samplers import GroupSampler, PairSampler

_SUPPORTED = (RetrievalRPrecision, RetrievalPrecision, RetrievalReciprocalRank)
#: Points per upsert when the dataset is written into the index.
_WRITE_BATCH = 4096


@dataclass
class IndexEvaluation:
    """Metric values computed through an index, with the size of the approximation.

    Attributes:
        metrics: ``{name: value}``, as :meth:`Evaluator.evaluate` returns them.
        recall: mean recall of the index's top-``recall_k`` against the exact
            top-``recall_k`` (the index's exhaustive search over the stored vectors) over
            ``recall_queries`` sampled queries (1.0: the index found the exact neighbours).
        recall_k: ``k`` of that recall.
        recall_queries: number of queries it was measured on.
        depth: neighbours read per query.
        unranked: relevant (query, item) incidences not within ``depth``; they count as
            misses, so R-precision and reciprocal rank are lower bounds when it is nonzero.
        exact: whether the index searched exhaustively.
    """

    metrics: Dict[str, Tensor]
    recall: float
    recall_k: int
    recall_queries: int
    depth: int
    unranked: int
    exact: bool
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        """Metric values and the approximation, one line each."""
        lines = [f"{name}: {_fmt(value)}" for name, value in self.metrics.items()]
        search = "exact search" if self.exact else "HNSW search"
        lines.append(
            f"neighbours from the index ({search}, depth {self.depth}); recall@{self.recall_k} "
            f"against exact search on {self.recall_queries} queries: {self.recall:.4f}; "
            f"relevant items beyond depth: {self.unranked}"
        )
        return "\n".join(lines + self.notes)


class IndexEvaluator:
    """Evaluate retrieval metrics with neighbours from a Qdrant index.

    ``evaluate(dataset, index)`` encodes the dataset with the index's model (as the exact
    samplers do) and adds each encoded batch to the empty ``index`` under ids ``0..N-1``
    (the evaluator keeps the labels, not the vectors), draws the query rows (Python's global
    ``random``, like the samplers), measures the recall reference by exhaustive search in
    the index, builds the graph (``index.optimize()``), and searches each query's ``depth``
    nearest neighbours, its vector read back from the index. Group datasets feed
    ``RetrievalRPrecision``, pair datasets ``RetrievalPrecision`` and
    ``RetrievalReciprocalRank`` (as ``PairSampler(distinguish=False)``: every object queries
    every other).

    Args:
        metrics: one metric or ``{name: metric}``; their distance must be the index's.
        sample_size: number of query rows; ``-1`` means all.
        depth: neighbours read per query. Default: enough for exact values under exact
            search (the largest number of relevant items for R-precision, ``k`` for
            precision), and at least 100 for reciprocal rank.
        exact: exhaustive search in the index (for checking; slow on large collections).
        hnsw_ef: HNSW beam width (higher: better recall, slower).
        recall_queries: queries on which recall against the index's exhaustive search is
            measured.
        recall_k: ``k`` of that recall.
        encode_batch_size: objects per ``model.encode`` call.
        log_progress: show progress bars.
    """

    def __init__(
        self,
        metrics: Union[BaseMetric, Dict[str, BaseMetric]],
        sample_size: int = -1,
        depth: Optional[int] = None,
        exact: bool = False,
        hnsw_ef: Optional[int] = None,
        recall_queries: int = 100,
        recall_k: int = 10,
        encode_batch_size: int = 64,
        log_progress: bool = True,
    ):
        self.metrics = metrics if isinstance(metrics, dict) else {type(metrics).__name__: metrics}
        if not self.metrics:
            raise ValueError(
                "metrics is empty; pass a metric or {name: metric}, e.g. "
                "{'rp': RetrievalRPrecision()}."
            )
        kinds = set()
        for name, metric in self.metrics.items():
            if not isinstance(metric, _SUPPORTED):
                raise TypeError(
                    f"metrics[{name!r}] is {type(metric).__name__}; index evaluation computes "
                    "RetrievalRPrecision, RetrievalPrecision and RetrievalReciprocalRank"
                )
            kinds.add(isinstance(metric, RetrievalRPrecision))
        if len(kinds) != 1:
            raise TypeError(
                "group metrics (RetrievalRPrecision) and pair metrics (RetrievalPrecision, "
                "RetrievalReciprocalRank) need different datasets: use two IndexEvaluators"
            )
        for name, value in (("depth", depth), ("recall_k", recall_k), ("hnsw_ef", hnsw_ef)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(recall_queries, int) or recall_queries < 0:
            raise ValueError(f"recall_queries must be an int >= 0, got {recall_queries!r}")
        self.group = kinds.pop()
        self.sample_size = sample_size
        self.depth = depth
        self.exact = exact
        self.hnsw_ef = hnsw_ef
        self.recall_queries = recall_queries
        self.recall_k = recall_k
        self.encode_batch_size = encode_batch_size
        self.log_progress = log_progress

    def evaluate(self, dataset: Sized, index: Any) -> IndexEvaluation:
        """Index ``dataset`` into the empty ``index`` and compute the metrics through it."""
        distance = Distance.get_by_name(index.distance)
        for name, metric in self.metrics.items():
            if metric.distance is not distance:
                raise ValueError(
                    f"metrics[{name!r}] uses {metric.distance.__name__} but the index was built "
                    f"with {index.distance!r}: create the metric with "
                    f"distance_metric_name={index.distance!r}"
                )
        if index.count() != 0:
            raise ValueError(
                f"the index already holds {index.count()} points; evaluation adds the dataset "
                "under ids 0..N-1: pass an empty index (e.g. SimilarityIndex(..., recreate=True))"
            )
        sampler = self._sampler()
        writer = _IndexWriter(index)
        try:
            # encodes the dataset straight into the index; draws the query rows and their
            # relevance exactly as the exact path does
            problem = sampler.draw(dataset, writer)
            relevance, rows = problem.relevance, problem.self_index.cpu()
            del problem
            sampler.reset()
            num_items = writer.written
            relevant = _relevant_per_row(relevance, rows.numel())
            depth = min(self._depth(relevant), num_items - 1)
            picked = random.sample(range(rows.numel()), k=min(self.recall_queries, rows.numel()))
            exact_top = self._exact_top(index, rows, picked, num_items)
            index.optimize()
            return self._reduce(index, num_items, relevance, rows, depth, picked, exact_top)
        finally:
            sampler.reset()

    def _sampler(self) -> Union[GroupSampler, PairSampler]:
        """The exact path's sampler: same encoding, same drawn rows, same relevance."""
        if self.group:
            return GroupSampler(self.sample_size, self.encode_batch_size, "cpu", self.log_progress)
        return PairSampler(
            self.sample_size, False, max(2, self.encode_batch_size), "cpu", self.log_progress
        )

    def _depth(self, relevant: Tensor) -> int:
        if self.depth is not None:
            return self.depth
        needed = [self.recall_k]
        for metric in self.metrics.values():
            if isinstance(metric, RetrievalRPrecision):
                needed.append(int(torch.ceil(relevant.max())) if relevant.numel() else 1)
            elif isinstance(metric, RetrievalPrecision):
                needed.append(metric.k)
            else:
                needed.append(100)
        return max(1, max(needed))

    def _reduce(
        self,
        index: Any,
        num_items: int,
        relevance: Any,
        rows: Tensor,
        depth: int,
        picked: List[int],
        exact_top: List[List[int]],
    ) -> IndexEvaluation:
        """Search the queries block by block (their vectors read back from the index) and
        feed each block to every metric; ``exact_top``: the exact top-k of the ``picked``
        queries."""
        for name, metric in self.metrics.items():
            if isinstance(metric, RetrievalPrecision) and metric.k > depth:
                raise ValueError(
                    f"metrics[{name!r}]: RetrievalPrecision(k={metric.k}) needs depth >= k, got "
                    f"depth={depth}"
                )
        reducers = {name: _reducer(metric) for name, metric in self.metrics.items()}
        hidden_parts: Dict[str, List[Tensor]] = {name: [] for name in self.metrics}
        unranked = {name: 0 for name in self.metrics}
        recall_lists: Dict[int, List[int]] = {}
        wanted = {rows[p].item(): p for p in picked}
        step = max(1, index.batch_size)
        bar = tqdm(total=rows.numel(), desc="Searching", disable=not self.log_progress)
        with bar:
            for start in range(0, rows.numel(), step):
                chunk = rows[start : start + step]
                neighbours = self._search(index, chunk, depth, self.exact, num_items)
                for position, query in enumerate(chunk.tolist()):
                    if query in wanted:
                        recall_lists[wanted[query]] = neighbours[position].tolist()
                block_rows, cols, vals = relevance.block(start, start + chunk.numel())
                k_needed = _needed_positions(block_rows, vals, chunk.numel())
                fill = max(0, int(k_needed.max()) - depth) if chunk.numel() else 0
                part = neighbour_block(neighbours, block_rows, cols, vals, num_items, fill)
                beyond = (k_needed > depth)[part.block.rows]
                for name, metric in self.metrics.items():
                    reducers[name].update(part.block)
                    if isinstance(metric, RetrievalReciprocalRank):
                        hidden_parts[name].append(part.hidden)
                        unranked[name] += int(part.hidden.sum())
                    elif isinstance(metric, RetrievalRPrecision):
                        unranked[name] += int((part.hidden & beyond).sum())
                bar.update(chunk.numel())
        metrics = {}
        for name, metric in self.metrics.items():
            value = reducers[name].compute()
            if isinstance(metric, RetrievalReciprocalRank):
                hidden = torch.cat(hidden_parts[name]) if hidden_parts[name] else torch.zeros(0)
                value = value.masked_fill(hidden.bool(), 0.0)  # beyond depth: a miss
                value = value if metric.reduce_func is None else metric.reduce_func(value)
            metrics[name] = value
        recall, used = _recall(exact_top, picked, recall_lists)
        missed = max(unranked.values())
        notes = []
        if missed:
            notes.append(
                f"{missed} relevant incidences ranked below depth {depth} counted as misses: "
                "the values are lower bounds; raise depth for exact ones"
            )
        return IndexEvaluation(
            metrics, recall, self.recall_k, used, depth, missed, self.exact, notes
        )

    def _search(self, index: Any, chunk: Tensor, depth: int, exact: bool, total: int) -> Tensor:
        """int64 ``(b, depth)``: the nearest other items of each item of ``chunk`` (its vector
        read back from the index), closest first, ties by id (``-1`` where the index
        returned fewer); ``exact``: exhaustive search; ``total``: points in the index."""
        vectors, queries = index.vectors(chunk.tolist()), chunk.tolist()
        results: List[list] = [[] for _ in queries]
        rows, limit = list(range(len(queries))), depth + 1
        while rows:  # ties crossing the limit: read the whole tie group (exact order: by id)
            hits = index.search(
                vectors=vectors[rows],
                limit=limit,
                exact=exact,
                hnsw_ef=self.hnsw_ef,
                with_payload=False,
            )
            for row, row_hits in zip(rows, hits):
                results[row] = row_hits
            rows = [
                row
                for row in rows
                if limit < total and _tie_crosses(results[row], queries[row], depth)
            ]
            limit *= 2
        width = max(depth + 1, max((len(hits) for hits in results), default=0))
        ids = torch.full((len(results), width), -1, dtype=torch.int64)
        scores = torch.full((len(results), width), float("inf"), dtype=torch.float64)
        sign = 1.0 if index.distance in ("euclidean", "manhattan") else -1.0
        for row, hits in enumerate(results):
            ids[row, : len(hits)] = torch.tensor([hit.id for hit in hits], dtype=torch.int64)
            scores[row, : len(hits)] = torch.tensor([sign * hit.score for hit in hits])
        scores[ids == chunk[:, None]] = float("inf")  # the query itself: not a neighbour
        scores[ids < 0] = float("inf")
        by_id = torch.argsort(torch.where(ids < 0, ids.max() + 1, ids), dim=1, stable=True)
        by_score = torch.argsort(scores.gather(1, by_id), dim=1, stable=True)
        order = by_id.gather(1, by_score)
        ranked = ids.gather(1, order)
        ranked[scores.gather(1, order) == float("inf")] = -1
        return ranked[:, :depth]

    def _exact_top(
        self, index: Any, rows: Tensor, picked: List[int], num_items: int
    ) -> List[List[int]]:
        """Top-``recall_k`` other items of each ``picked`` query by the index's exhaustive
        search (before the graph is built: a scan of the stored vectors)."""
        k = min(self.recall_k, num_items - 1)
        if not picked or k < 1:
            return []
        return self._search(index, rows[torch.tensor(picked)], k, True, num_items).tolist()


class _IndexWriter:
    """Stands in for the index's model while a sampler encodes the dataset: each batch is
    encoded by the model and added to the index under the next ids (the item's row in the
    sampler), so the evaluator never holds every vector. The sampler keeps what ``encode``
    returns, here one zero column per item (4 bytes each): its labels, its draw of the
    query rows and their relevance are the exact path's."""

    def __init__(self, index: Any):
        self.index = index
        self.written = 0

    def encode(self, objects: list, batch_size: int, to_numpy: bool = False) -> Tensor:
        vectors = self.index.model.encode(objects, batch_size=batch_size, to_numpy=False)
        vectors = torch.as_tensor(vectors).detach().float().cpu()
        finite = torch.isfinite(vectors).all(dim=1)
        if not bool(finite.all()):
            first = self.written + int((~finite).nonzero()[0, 0])
            raise ValueError(
                f"encoded embeddings contain NaN or inf (first: item {first}); a metric over "
                "them would be meaningless. Check the encoder output (e.g. a zero-norm input "
                f"or a diverged model). The index holds the {self.written} items encoded "
                "before it: evaluate into a fresh index (recreate=True)"
            )
        ids = range(self.written, self.written + vectors.shape[0])
        self.index.add_vectors(vectors, ids=ids, batch_size=_WRITE_BATCH)
        self.written += vectors.shape[0]
        return torch.zeros(vectors.shape[0], 1)


def _tie_crosses(hits: list, query: int, depth: int) -> bool:
    """Whether the ``depth``-th hit other than ``query`` ties with the last hit of a full
    result: hits of that score may lie past the search's limit."""
    others = [hit.score for hit in hits if hit.id != query]
    return depth >= 1 and len(others) >= depth and others[depth - 1] == hits[-1].score


def _recall(
    exact_top: List[List[int]], picked: List[int], found: Dict[int, List[int]]
) -> tuple[float, int]:
    """Mean ``|index top-k ∩ exact top-k| / k`` over the ``picked`` queries."""
    if not exact_top:
        return float("nan"), 0
    k = len(exact_top[0])
    hits = sum(len(set(found[p][:k]) & set(top)) for p, top in zip(picked, exact_top))
    return hits / (k * len(picked)), len(picked)


def _reducer(metric: BaseMetric) -> BlockReducer:
    """The metric's own reducer; reciprocal rank unreduced (hidden items are zeroed first)."""
    if isinstance(metric, RetrievalReciprocalRank):
        return ReciprocalRankReducer()
    return metric.block_reducer()


def _relevant_per_row(relevance: Any, n: int) -> Tensor:
    """``R_i = sum_j L[i, j]`` of every query row, read block by block."""
    total = torch.zeros(n, dtype=torch.float64)
    step = max(1, 2**22 // 64)
    for start in range(0, n, step):
        end = min(start + step, n)
        rows, _, vals = relevance.block(start, end)
        total[start:end].index_add_(0, rows, vals.to(torch.float64))
    return total


def _needed_positions(rows: Tensor, vals: Tensor, b: int) -> Tensor:
    """``ceil(R_i)`` of a block's rows: the positions R-precision reads."""
    relevant = torch.zeros(b, dtype=torch.float64).index_add_(0, rows, vals.to(torch.float64))
    return torch.ceil(relevant).to(torch.int64)


def _fmt(value: Tensor) -> str:
    return f"{value.item():.4f}" if value.numel() == 1 else str(value.tolist())
