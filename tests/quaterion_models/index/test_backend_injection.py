"""SimilarityIndex(model, backend=...) with a toy Backend defined here (a dict in memory)."""

from typing import Any, Optional

import numpy as np
import pytest

from quaterion_models.index import (
    Backend,
    Hit,
    HnswParams,
    IndexInfo,
    ModelMismatchError,
    QueryOptions,
    SimilarityIndex,
)
from tests.quaterion_models.index.conftest import make_model, make_objects


class DictBackend(Backend):
    """Points in a dict, Euclidean brute force; the binding survives close/reopen."""

    location = "a dict"

    def __init__(self):
        self.info: Optional[IndexInfo] = None
        self.points: dict = {}
        self.closed = 0
        self.optimized = 0

    def load_info(self) -> Optional[IndexInfo]:
        return self.info

    def create(self, info: IndexInfo) -> None:
        self.info, self.points = info, {}

    def drop(self) -> None:
        self.info, self.points = None, {}

    def upsert(self, ids, vectors, payloads) -> None:
        for point_id, vector, payload in zip(ids, vectors, payloads):
            self.points[point_id] = (vector.copy(), payload)

    def query(self, vectors: np.ndarray, options: QueryOptions) -> list:
        ids = list(self.points)
        stored = np.stack([self.points[i][0] for i in ids])
        results = []
        for vector in vectors:
            scores = np.linalg.norm(stored - vector, axis=1)
            order = np.argsort(scores, kind="stable")[: options.limit]
            results.append([Hit(ids[j], float(scores[j]), self.points[ids[j]][1]) for j in order])
        return results

    def count(self, filter: Any) -> int:
        return len(self.points)

    def delete(self, ids, filter) -> None:
        for point_id in ids or []:
            self.points.pop(point_id, None)

    def scroll(self, offset, limit):
        ids = sorted(i for i in self.points if offset is None or i >= offset)
        points = [(i, self.points[i][0].tolist(), self.points[i][1]) for i in ids[:limit]]
        return points, ids[limit] if len(ids) > limit else None

    def optimize(self) -> None:
        self.optimized += 1

    def close(self) -> None:
        self.closed += 1


def test_a_toy_backend_stores_and_searches():
    model, objects, backend = make_model(), make_objects(30), DictBackend()
    payloads = [{"i": i} for i in range(30)]
    with SimilarityIndex(model, backend=backend, distance="euclidean", m=8) as index:
        assert index.add(objects, payloads=payloads, ids=list(range(30))) == list(range(30))
        index.optimize()
        hits = index.search(objects[:4], limit=3)
    assert backend.closed == 1 and backend.optimized == 1
    assert backend.info.hnsw == HnswParams(m=8)
    vectors = model.encode(objects)
    for q, found in enumerate(hits):
        distances = np.linalg.norm(vectors - vectors[q], axis=1)
        expected = np.argsort(distances, kind="stable")[:3]
        assert [h.id for h in found] == expected.tolist()
        np.testing.assert_allclose([h.score for h in found], distances[expected], atol=1e-6)
        assert found[0].payload == {"i": q}
    # the binding is the backend's: reopening checks the model against it
    with SimilarityIndex.open(model, backend=backend) as index:
        assert index.count() == 30 and index.distance == "euclidean"
    with pytest.raises(ModelMismatchError):
        SimilarityIndex(make_model(seed=5), backend=backend)
    assert backend.closed == 3  # closed after the refused open too


def test_default_vector_read_pages_from_each_id():
    """``Backend.vectors`` falls back on ``scroll`` for a backend without a batched read."""
    model, objects, backend = make_model(), make_objects(12), DictBackend()
    with SimilarityIndex(model, backend=backend, distance="euclidean") as index:
        index.add(objects, ids=[2 * i for i in range(12)])
        got = index.vectors([22, 0, 10])
        np.testing.assert_allclose(got, model.encode(objects)[[11, 0, 5]], rtol=1e-6)
        with pytest.raises(ValueError, match=r"1 of 2 ids are not in a dict \(first: 3\)"):
            index.vectors([4, 3])  # scroll from 3 finds 4, not 3


def test_a_bad_row_reaches_no_backend():
    backend = DictBackend()
    with SimilarityIndex(make_model(), backend=backend, distance="euclidean") as index:
        with pytest.raises(TypeError, match=r"payloads\[1\]"):
            index.add(make_objects(2), payloads=[{}, {"s": {1}}])
    assert backend.points == {}


def test_backend_must_be_a_backend_and_the_only_location(tmp_path):
    with pytest.raises(TypeError, match="must be a quaterion_models.index.Backend"):
        SimilarityIndex(make_model(), backend=object(), distance="cosine")
    with pytest.raises(ValueError, match=r"exactly one location.*\['path', 'backend'\]"):
        SimilarityIndex(make_model(), path=tmp_path, backend=DictBackend(), distance="cosine")
    with pytest.raises(TypeError, match="abstract"):
        type("Half", (Backend,), {"location": "x"})()
