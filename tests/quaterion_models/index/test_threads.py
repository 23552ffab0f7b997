"""One SimilarityIndex used from several threads at once: every write lands, reads stay whole.

qdrant-client's local mode (``QdrantClient(path=...)``) keeps plain Python structures: threads
adding while others searched raised numpy broadcast errors and ``SystemError`` and lost points.
"""

import threading

import numpy as np
import pytest

from quaterion_models.index import SimilarityIndex
from tests.quaterion_models.index.conftest import make_model

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")

WRITERS, BATCHES, ROWS = 4, 15, 16


def _run_threads(targets: list) -> list:
    errors: list = []

    def guarded(target):
        try:
            target()
        except Exception as err:  # noqa: BLE001 - collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return errors


def test_concurrent_writes_and_searches_all_land(location):
    rng = np.random.default_rng(0)
    total = WRITERS * BATCHES * ROWS
    vectors = rng.standard_normal((total, 8)).astype(np.float32)
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:

        def writer(first: int) -> None:
            for batch in range(BATCHES):
                start = first + batch * ROWS
                ids = list(range(start, start + ROWS))
                index.add_vectors(vectors[start : start + ROWS], ids=ids)

        def reader() -> None:
            for _ in range(60):
                for hits in index.search(vectors=vectors[:3], limit=5, exact=True):
                    assert len(hits) <= 5 and all(0 <= hit.id < total for hit in hits)
                index.count()

        per_writer = BATCHES * ROWS
        targets = [lambda w=w: writer(w * per_writer) for w in range(WRITERS)] + [reader] * 2
        errors = _run_threads(targets)
        assert errors == []
        assert index.count() == total
        stored = index.vectors(list(range(total)))
    expected = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # cosine: unit length
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
