"""HNSW parameters at creation and search time; optimize() builds a graph that search uses."""

import numpy as np
import pytest

from quaterion_models import SimilarityModel
from quaterion_models.heads import EmptyHead
from quaterion_models.index import HnswParams, IndexConfigError, SimilarityIndex
from tests.quaterion_models.index.conftest import make_model, make_objects
from tests.quaterion_models.toy_encoders import StackEncoder

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")

DIM = 32


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit-free points around 40 centres (neighbours within a cluster are close)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM))
    return (centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, DIM))).astype(np.float32)


def exact_top(queries: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """Cosine top-k by NumPy (the reference)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    p = points / np.linalg.norm(points, axis=1, keepdims=True)
    return np.argsort(-(q @ p.T), axis=1, kind="stable")[:, :k]


def recall_at(index: SimilarityIndex, points: np.ndarray, k: int, **search) -> float:
    queries = points[:200]
    hits = index.search(vectors=queries, limit=k, with_payload=False, **search)
    expected = exact_top(queries, points, k)
    found = [len({h.id for h in got} & set(top.tolist())) for got, top in zip(hits, expected)]
    return sum(found) / (k * len(queries))


def identity_model() -> SimilarityModel:
    return SimilarityModel(encoders=StackEncoder(DIM), head=EmptyHead(DIM))


def test_parameters_are_recorded_and_fixed_at_creation(location):
    kwargs = location.kwargs()
    with SimilarityIndex(make_model(), distance="cosine", m=8, ef_construct=32, **kwargs) as index:
        assert index.info.hnsw == HnswParams(m=8, ef_construct=32, full_scan_threshold=10000)
    with SimilarityIndex.open(make_model(), m=8, **kwargs) as index:  # same value: fine
        assert index.info.hnsw.m == 8
    with pytest.raises(IndexConfigError, match=r"'m': 16.*recreate=True"):
        SimilarityIndex.open(make_model(), m=16, **kwargs)
    with SimilarityIndex(make_model(), m=16, recreate=True, **kwargs) as index:
        assert index.info.hnsw == HnswParams(m=16) and index.distance == "cosine"


@pytest.mark.parametrize(
    "bad", [{"m": 1}, {"ef_construct": 0}, {"full_scan_threshold": 0}, {"m": 8.0}, {"m": True}]
)
def test_bad_parameters_are_refused_before_opening(tmp_path, bad):
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an int"):
        SimilarityIndex(make_model(), path=tmp_path / "i", distance="cosine", **bad)
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize("ef", [0, -3, 2.5, True])
def test_bad_search_beam_is_refused(tmp_path, ef):
    with SimilarityIndex(make_model(), path=tmp_path / "i", distance="cosine") as index:
        with pytest.raises(ValueError, match="hnsw_ef must be a positive int"):
            index.search(vectors=np.ones((1, 8)), hnsw_ef=ef)


def test_optimize_builds_a_graph_of_a_small_index_and_search_uses_it(tmp_path):
    points = clustered(3000)
    options = {"distance": "cosine", "full_scan_threshold": 1, "show_progress": False}
    with SimilarityIndex(
        identity_model(), path=tmp_path / "i", m=16, ef_construct=64, **options
    ) as index:
        index.add_vectors(points, ids=list(range(len(points))))
        assert index.backend.shard.info().indexed_vectors_count == 0
        assert recall_at(index, points, 10, hnsw_ef=10) == 1.0  # unindexed: a full scan
        index.optimize()
        assert index.backend.shard.info().indexed_vectors_count == 3000
        assert recall_at(index, points, 10, hnsw_ef=128) >= 0.97  # the stated floor
        assert recall_at(index, points, 10, exact=True) == 1.0
    # a sparse graph and a narrow beam miss neighbours: the graph, not a scan, answered
    with SimilarityIndex(
        identity_model(), path=tmp_path / "j", m=4, ef_construct=4, **options
    ) as index:
        index.add_vectors(points, ids=list(range(len(points))))
        index.optimize()
        assert recall_at(index, points, 10, hnsw_ef=10) < 0.99


class Spy:
    """Records the keyword arguments of the client methods the server backend calls."""

    def __init__(self, client, names):
        self.calls = {name: [] for name in names}
        for name in names:
            setattr(client, name, self.wrap(name, getattr(client, name)))

    def wrap(self, name, method):
        def spied(*args, **kwargs):
            self.calls[name].append(kwargs)
            return method(*args, **kwargs)

        return spied


def test_server_gets_the_parameters_and_optimize_lowers_the_threshold(tmp_path):
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "local"))
    spy = Spy(client, ["create_collection", "update_collection"])
    kwargs = {"client": client, "distance": "cosine", "show_progress": False}
    with SimilarityIndex(make_model(), m=8, ef_construct=32, **kwargs) as index:
        index.add(make_objects(50), ids=list(range(50)))
        index.optimize()  # local mode reports green at once
        assert index.count() == 50
    (created,) = spy.calls["create_collection"]
    hnsw = created["hnsw_config"]
    assert (hnsw.m, hnsw.ef_construct, hnsw.full_scan_threshold) == (8, 32, 10000)
    assert created["metadata"]["hnsw"] == {"m": 8, "ef_construct": 32, "full_scan_threshold": 10000}
    updates = spy.calls["update_collection"]
    assert [call["optimizers_config"].indexing_threshold for call in updates] == [1]
    client.close()


def test_low_memory_shard_builds_the_same_search_and_reopens(tmp_path):
    """``EmbeddedBackend(low_memory=True)``: no write-ahead log, cold mmaps; same answers."""
    from quaterion_models.index.embedded import EmbeddedBackend

    points = clustered(3000, seed=4)
    backend = EmbeddedBackend(tmp_path / "low", low_memory=True)
    with SimilarityIndex(identity_model(), backend=backend, distance="cosine", m=8,
                         ef_construct=32, full_scan_threshold=1, show_progress=False) as index:  # fmt: skip
        index.add_vectors(points, ids=list(range(len(points))))
        index.optimize()
        assert index.backend.shard.info().indexed_vectors_count == len(points)
        assert recall_at(index, points, 10) >= 0.95
        exact = index.search(vectors=points[:50], limit=10, exact=True, with_payload=False)
        expected = exact_top(points[:50], points, 10)
        assert [[h.id for h in row] for row in exact] == expected.tolist()
    assert not (tmp_path / "low" / "shard" / "wal").exists()
    # an ordinary handle opens it (the log setting is the shard's own) and finds every point
    with SimilarityIndex.open(identity_model(), tmp_path / "low", show_progress=False) as index:
        assert index.count() == len(points)
        again = index.search(vectors=points[:50], limit=10, exact=True, with_payload=False)
        assert [[h.id for h in row] for row in again] == expected.tolist()
    with pytest.raises(TypeError, match="low_memory must be a bool"):
        EmbeddedBackend(tmp_path / "x", low_memory=1)


def shard_resident_kib(root) -> int:
    """Resident KiB of this process's mappings of files under ``root`` (``/proc/self/smaps``)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header
                inside = len(fields) > 5 and fields[5].startswith(str(root))
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def test_low_memory_optimize_leaves_no_copy_of_the_shard_resident(tmp_path):
    """Qdrant Edge keeps the pages its writes touched, and the segment the build replaced,
    mapped until the shard closes; ``optimize`` reopens the shard around the build, so after
    it nothing of the shard is resident until a search reads it."""
    from quaterion_models.index.embedded import EmbeddedBackend

    points = clustered(20_000, seed=6)
    backend = EmbeddedBackend(tmp_path / "low", low_memory=True)
    with SimilarityIndex(identity_model(), backend=backend, distance="cosine", m=6,
                         ef_construct=16, show_progress=False) as index:  # fmt: skip
        index.add_vectors(points, ids=range(len(points)))
        written = shard_resident_kib(tmp_path)
        assert written >= points.nbytes // 1024  # the writes' pages: at least the vectors
        index.optimize()
        assert shard_resident_kib(tmp_path) < 256  # vectors are 2,500 KiB
        assert index.backend.shard.info().indexed_vectors_count == len(points)
        hits = index.search(vectors=points[:20], limit=1, exact=True, with_payload=False)
        assert [row[0].id for row in hits] == list(range(20))
        index.add_vectors(points[:5] * 2, ids=range(len(points), len(points) + 5))  # still open
        assert index.count() == len(points) + 5
