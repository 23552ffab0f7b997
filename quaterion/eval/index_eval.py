"""Retrieval metrics with neighbours from a Qdrant index instead of the exact blocked pass.

For collections too large for :class:`~quaterion.eval.evaluator.Evaluator`, the dataset is
indexed into a :class:`~quaterion_models.index.SimilarityIndex` and each query reads only
its ``depth`` nearest neighbours from the index. The report states the approximation: the
recall of the index's top-k against exact top-k on a sample of queries, and how many
relevant items fell below ``depth``. With ``exact=True`` and a ``depth`` that covers every
relevant item, the values equal the exact ``Evaluator``'s.
"""

import math
import random
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from quaterion.distances import Distance
from quaterion.eval.base_metric import BaseMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import GroupSampler, PairSampler

_SUPPORTED = (RetrievalRPrecision, RetrievalPrecision, RetrievalReciprocalRank)


@dataclass
class IndexEvaluation:
    """Metric values computed through an index, with the size of the approximation.

    Attributes:
        metrics: ``{name: value}``, as :meth:`Evaluator.evaluate` returns them.
        recall: mean recall of the index's top-``recall_k`` against exact top-``recall_k``
            over ``recall_queries`` sampled queries (1.0: the index found the exact
            neighbours).
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
    samplers do), adds the vectors to the empty ``index`` under ids ``0..N-1``, draws the
    query rows (Python's global ``random``, like the samplers), and searches each query's
    ``depth`` nearest neighbours. Group datasets feed ``RetrievalRPrecision``, pair
    datasets ``RetrievalPrecision`` and ``RetrievalReciprocalRank`` (as
    ``PairSampler(distinguish=False)``: every object queries every other).

    Args:
        metrics: one metric or ``{name: metric}``; their distance must be the index's.
        sample_size: number of query rows; ``-1`` means all.
        depth: neighbours read per query. Default: enough for exact values under exact
            search (the largest number of relevant items for R-precision, ``k`` for
            precision), and at least 100 for reciprocal rank.
        exact: exhaustive search in the index (for checking; slow on large collections).
        hnsw_ef: HNSW beam width (higher: better recall, slower).
        recall_queries: queries on which recall against exact search is measured.
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
        for name, value in (("depth", depth), ("recall_k", recall_k)):
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
        embeddings, relevance = self._encode(dataset, index.model)
        num_items = embeddings.shape[0]
        index.add_vectors(embeddings, ids=list(range(num_items)))
        index.optimize()
        n = min(self.sample_size, num_items) if self.sample_size > 0 else num_items
        rows = random.sample(range(num_items), k=n)
        depth = min(self._depth(relevance, rows), num_items - 1)
        neighbours = self._search(index, embeddings, rows, depth, distance)

        metrics, unranked = {}, 0
        for name, metric in self.metrics.items():
            value, missed = _compute(metric, rows, neighbours, relevance, num_items, depth)
            metrics[name] = value
            unranked = max(unranked, missed)
        recall, used = self._recall(embeddings, rows, neighbours, distance)
        notes = []
        if unranked:
            notes.append(
                f"{unranked} relevant incidences ranked below depth {depth} counted as misses: "
                "the values are lower bounds; raise depth for exact ones"
            )
        return IndexEvaluation(
            metrics, recall, self.recall_k, used, depth, unranked, self.exact, notes
        )

    def _encode(self, dataset: Sized, model: Any) -> tuple[Tensor, List[Dict[int, float]]]:
        """Embeddings ``(N, d)`` through the exact samplers' own encoding, and per item its
        relevant items ``{item: label}``."""
        if self.group:
            sampler = GroupSampler(
                encode_batch_size=self.encode_batch_size, log_progress=self.log_progress
            )
            sampler.accumulate(model, dataset)
            embeddings, groups = sampler.accumulator.embeddings, sampler.accumulator.groups
            members: Dict[int, List[int]] = {}
            for item, group in enumerate(groups.tolist()):
                members.setdefault(group, []).append(item)
            relevance = [
                {j: 1.0 for j in members[group] if j != item}
                for item, group in enumerate(groups.tolist())
            ]
        else:
            sampler = PairSampler(
                encode_batch_size=max(2, self.encode_batch_size), log_progress=self.log_progress
            )
            sampler.accumulate(model, dataset)
            embeddings = sampler.accumulator.embeddings
            pairs = sampler.accumulator.pairs.reshape(-1, 2).tolist()
            scores = sampler.accumulator.labels.reshape(-1).tolist()
            relevance = [{} for _ in range(embeddings.shape[0])]
            # L[a, b] = L[b, a] = score: all (a, b) first, then all (b, a); the last write wins
            for (a, b), score in zip(pairs, scores):
                relevance[a][b] = score
            for (a, b), score in zip(pairs, scores):
                relevance[b][a] = score
            relevance = [{j: v for j, v in rel.items() if v != 0} for rel in relevance]
        sampler.reset()
        return embeddings.detach().float().cpu(), relevance

    def _depth(self, relevance: List[Dict[int, float]], rows: List[int]) -> int:
        if self.depth is not None:
            return self.depth
        needed = [self.recall_k]
        for metric in self.metrics.values():
            if isinstance(metric, RetrievalRPrecision):
                needed.append(max(math.ceil(sum(relevance[q].values())) for q in rows))
            elif isinstance(metric, RetrievalPrecision):
                needed.append(metric.k)
            else:
                needed.append(100)
        return max(1, max(needed))

    def _search(
        self, index: Any, embeddings: Tensor, rows: List[int], depth: int, distance: Any
    ) -> List[List[int]]:
        """Each query's ``depth`` nearest other items, closest first, ties by item id."""
        sign = 1.0 if distance.__name__ in ("Euclidean", "Manhattan") else -1.0
        neighbours = []
        batch = max(1, index.batch_size)
        bar = tqdm(total=len(rows), desc="Searching", disable=not self.log_progress)
        with bar:
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                results = index.search(
                    vectors=embeddings[chunk],
                    limit=depth + 1,
                    exact=self.exact,
                    hnsw_ef=self.hnsw_ef,
                    with_payload=False,
                )
                for query, hits in zip(chunk, results):
                    ranked = sorted((sign * hit.score, hit.id) for hit in hits if hit.id != query)
                    neighbours.append([item for _, item in ranked[:depth]])
                bar.update(len(chunk))
        return neighbours

    def _recall(
        self, embeddings: Tensor, rows: List[int], neighbours: List[List[int]], distance: Any
    ) -> tuple[float, int]:
        """Mean ``|index top-k ∩ exact top-k| / k`` over up to ``recall_queries`` queries."""
        k = min(self.recall_k, embeddings.shape[0] - 1)
        picked = random.sample(range(len(rows)), k=min(self.recall_queries, len(rows)))
        if not picked or k < 1:
            return float("nan"), 0
        queries = torch.tensor([rows[p] for p in picked])
        matrix = distance.distance_matrix(embeddings[queries], embeddings)
        matrix[torch.arange(len(picked)), queries] = float("inf")
        exact = torch.topk(matrix, k, dim=1, largest=False).indices.tolist()
        found = sum(len(set(neighbours[p][:k]) & set(top)) for p, top in zip(picked, exact))
        return found / (k * len(picked)), len(picked)


def _compute(
    metric: BaseMetric,
    rows: List[int],
    neighbours: List[List[int]],
    relevance: List[Dict[int, float]],
    num_items: int,
    depth: int,
) -> tuple[Tensor, int]:
    """One metric from ranked neighbour lists (the formulas of the exact metrics).

    Returns the value and the number of relevant incidences the depth hid from it.
    """
    complete = depth >= num_items - 1  # every other item was ranked
    if isinstance(metric, RetrievalRPrecision):
        hits = positions = 0.0
        missed = 0
        for query, ranked in zip(rows, neighbours):
            rel = relevance[query]
            k = min(math.ceil(sum(rel.values())), num_items)
            top = ranked[:k]
            hits += sum(rel.get(item, 0.0) for item in top)
            positions += k
            if k > len(top) and not complete:
                missed += len(rel.keys() - set(top))
        return torch.tensor(hits / positions if positions else float("nan")), missed
    if isinstance(metric, RetrievalPrecision):
        if metric.k > depth and not complete:
            raise ValueError(
                f"RetrievalPrecision(k={metric.k}) needs depth >= k, got depth={depth}"
            )
        values = torch.tensor(
            [
                sum(relevance[q].get(item, 0.0) for item in ranked[: metric.k]) / metric.k
                for q, ranked in zip(rows, neighbours)
            ],
            dtype=torch.float32,
        )
        return (values if metric.reduce_func is None else metric.reduce_func(values)), 0
    values, missed = [], 0
    for query, ranked in zip(rows, neighbours):
        position = {item: rank for rank, item in enumerate(ranked)}
        ranks = sorted(position[item] for item in relevance[query] if item in position)
        values.extend(1.0 / (rank + 1) for rank in ranks)
        hidden = len(relevance[query]) - len(ranks)
        values.extend([0.0] * hidden)  # ranked below depth: counted as a miss
        missed += hidden
    values = torch.tensor(values, dtype=torch.float32)
    return (values if metric.reduce_func is None else metric.reduce_func(values)), missed


def _fmt(value: Tensor) -> str:
    return f"{value.item():.4f}" if value.numel() == 1 else str(value.tolist())
