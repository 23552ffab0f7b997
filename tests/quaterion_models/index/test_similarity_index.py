"""SimilarityIndex on both backends: round trips, exact top-k, persistence, safety, errors."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from quaterion_models.index import (
    IndexConfigError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    ServerUnreachableError,
    SimilarityIndex,
    servable_fingerprint,
)
from tests._ranking import assert_top_k
from tests.quaterion_models.index.conftest import make_model, make_objects

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = [
    # qdrant-client's local mode is always exact and says so when search params are passed.
    pytest.mark.filterwarnings("ignore:Local mode performs exact"),
    # its version check of the unreachable server runs in a thread and warns a little later
    pytest.mark.filterwarnings("ignore:Failed to obtain server version"),
]


def brute_force(queries: np.ndarray, points: np.ndarray, distance: str):
    """Qdrant-style scores of every (query, point), by a plain NumPy pass, and whether a
    higher score is nearer."""
    if distance == "cosine":
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        p = points / np.linalg.norm(points, axis=1, keepdims=True)
        return q @ p.T, True
    if distance == "dot_product":
        return queries @ points.T, True
    if distance == "euclidean":
        return np.sqrt(((queries[:, None, :] - points[None, :, :]) ** 2).sum(-1)), False
    return np.abs(queries[:, None, :] - points[None, :, :]).sum(-1), False


def run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_round_trip_of_ids_and_payloads(location):
    model, objects = make_model(), make_objects(30)
    ids = [i * 7 for i in range(25)] + [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]
    payloads = [{"n": i, "name": f"item {i}", "tags": ["a", str(i % 3)]} for i in range(30)]
    with SimilarityIndex(model, distance="euclidean", batch_size=7, **location.kwargs()) as index:
        assert index.add(objects, payloads=payloads, ids=ids) == ids
        assert index.count() == len(index) == 30
        results = index.search(objects, limit=1, exact=True)
    assert [hits[0].id for hits in results] == ids
    assert [hits[0].payload for hits in results] == payloads
    assert all(hits[0].score == pytest.approx(0.0, abs=1e-5) for hits in results)


def test_default_ids_are_unique_uuids(location):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        ids = index.add(make_objects(10))
        assert len(set(ids)) == 10 and index.count() == 10
        hits = index.search(vectors=np.ones((1, 8)), limit=10)[0]
        assert {hit.id for hit in hits} == set(ids)
        assert all(hit.payload is None for hit in hits)  # no payload: None on both backends


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_stored_vectors_read_back_in_the_order_asked(location, distance):
    model, objects = make_model(), make_objects(40)
    ids = [i * 3 for i in range(35)] + [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]
    expected = model.encode(objects)
    if distance == "cosine":  # Qdrant stores cosine vectors at unit length
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    with SimilarityIndex(model, distance=distance, batch_size=6, **location.kwargs()) as index:
        index.add(objects, ids=ids)
        order = [39, 0, 17, 36, 5, 5, 20]
        got = index.vectors([ids[i] for i in order])
        assert got.dtype == np.float32 and got.shape == (len(order), 8)
        np.testing.assert_allclose(got, expected[order], rtol=1e-6, atol=1e-6)
        assert index.vectors([]).shape == (0, 8)
        with pytest.raises(ValueError, match=r"2 of 3 ids are not in .*first: 1\)"):
            index.vectors([0, 1, 2])
        with pytest.raises(TypeError, match=r"ids\[1\] must be an int >= 0 .*int64"):
            index.vectors([0, np.int64(3)])


@pytest.mark.parametrize("distance", ["cosine", "dot_product", "euclidean", "manhattan"])
def test_exact_top_k_equals_brute_force(location, distance):
    model = make_model()
    points, queries = make_objects(200, seed=1), make_objects(12, seed=2)
    with SimilarityIndex(model, distance=distance, batch_size=50, **location.kwargs()) as index:
        index.add(points, ids=list(range(200)))
        by_object = index.search(queries, limit=10, exact=True)
        query_vectors = model.encode(queries)
        by_vector = index.search(vectors=query_vectors, limit=10, exact=True)
    all_scores, higher = brute_force(query_vectors, model.encode(points), distance)
    for hits, hits_v, scores in zip(by_object, by_vector, all_scores):
        assert len(hits) == len(hits_v) == 10
        assert_top_k([hit.id for hit in hits], scores, higher)
        assert_top_k([hit.id for hit in hits_v], scores, higher)
        expected = scores[[hit.id for hit in hits]]
        np.testing.assert_allclose([hit.score for hit in hits], expected, rtol=1e-4, atol=1e-4)


def test_reopened_in_a_new_process(location, tmp_path):
    model, objects = make_model(), make_objects(40)
    servable = tmp_path / "servable"
    model.save(str(servable))
    with SimilarityIndex(model, distance="cosine", **location.kwargs()) as index:
        index.add(objects, payloads=[{"i": i} for i in range(40)], ids=list(range(40)))
        expected = [[hit.id for hit in hits] for hits in index.search(objects[:5], limit=4)]
    location.release()
    np.save(tmp_path / "queries.npy", model.encode(objects[:5]))
    completed = run_python(
        f"""
        import json, numpy as np
        from qdrant_client import QdrantClient
        from quaterion_models.index import SimilarityIndex
        with SimilarityIndex.open({str(servable)!r}, {location.python_kwargs()}) as index:
            hits = index.search(vectors=np.load({str(tmp_path / "queries.npy")!r}), limit=4)
            print(json.dumps({{"count": index.count(), "distance": index.distance,
                              "ids": [[h.id for h in q] for q in hits],
                              "payload": hits[0][0].payload}}))
        """
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["count"] == 40 and result["distance"] == "cosine"
    assert result["ids"] == expected
    assert result["payload"] == {"i": expected[0][0]}


def test_a_different_model_is_refused_unless_recreated(location):
    objects = make_objects(10)
    with SimilarityIndex(make_model(seed=0), distance="cosine", **location.kwargs()) as index:
        index.add(objects, ids=list(range(10)))
    other = make_model(seed=1)
    with pytest.raises(ModelMismatchError) as err:
        SimilarityIndex(other, **location.kwargs())
    message = str(err.value)
    assert servable_fingerprint(make_model(seed=0)) in message
    assert servable_fingerprint(other) in message and "recreate=True" in message
    with SimilarityIndex(other, recreate=True, **location.kwargs()) as index:
        assert index.count() == 0 and index.distance == "cosine"
        assert index.info.fingerprint == servable_fingerprint(other)
    with SimilarityIndex.open(other, **location.kwargs()) as index:  # the new binding holds
        assert index.count() == 0


def test_fingerprint_follows_weights_and_config():
    assert servable_fingerprint(make_model(seed=0)) == servable_fingerprint(make_model(seed=0))
    assert servable_fingerprint(make_model(seed=0)) != servable_fingerprint(make_model(seed=1))
    assert servable_fingerprint(make_model(dim=8)) != servable_fingerprint(make_model(dim=6))


def test_filters(location):
    objects = make_objects(60)
    payloads = [{"colour": ["red", "green", "blue"][i % 3], "size": i % 4} for i in range(60)]
    with SimilarityIndex(make_model(), distance="euclidean", **location.kwargs()) as index:
        index.add(objects, payloads=payloads, ids=list(range(60)))
        red = index.search(objects[:3], limit=60, filter={"colour": "red"}, exact=True)
        assert all({hit.id % 3 for hit in hits} == {0} and len(hits) == 20 for hits in red)
        mixed = index.search(
            objects[:1], limit=60, filter={"colour": ["red", "blue"], "size": 1}, exact=True
        )[0]
        expected = {i for i in range(60) if i % 3 in (0, 2) and i % 4 == 1}
        assert {hit.id for hit in mixed} == expected
        assert index.count(filter={"size": [0, 1]}) == 30
        with pytest.raises(TypeError, match="filter"):
            index.search(objects[:1], filter={"size": 1.5})


def test_native_filters_pass_through(location):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add(make_objects(10), payloads=[{"i": i} for i in range(10)], ids=list(range(10)))
        if location.backend == "embedded":
            import qdrant_edge as edge

            native = edge.Filter(must=[edge.FieldCondition("i", range=edge.RangeFloat(gte=7))])
        else:
            from qdrant_client import models

            native = models.Filter(must=[models.FieldCondition(key="i", range=models.Range(gte=7))])
        assert index.count(filter=native) == 3


def test_delete_by_ids_and_filter(location):
    objects = make_objects(20)
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add(objects, payloads=[{"odd": i % 2} for i in range(20)], ids=list(range(20)))
        index.delete(ids=[0, 2, 4])
        assert index.count() == 17
        index.delete(filter={"odd": 1})
        assert index.count() == 7
        remaining = {hit.id for hit in index.search(objects[:1], limit=20, exact=True)[0]}
        assert remaining == {6, 8, 10, 12, 14, 16, 18}
        with pytest.raises(ValueError, match="ids"):
            index.delete()


def test_crash_mid_add_keeps_every_acknowledged_batch(location, tmp_path):
    model = make_model()
    servable = tmp_path / "servable"
    model.save(str(servable))
    SimilarityIndex(model, distance="cosine", **location.kwargs()).close()
    location.release()
    # The child adds 10 batches of 5 and dies (os._exit, no cleanup) writing the 4th.
    completed = run_python(
        f"""
        import os, torch
        from qdrant_client import QdrantClient
        from quaterion_models.index import SimilarityIndex
        index = SimilarityIndex.open({str(servable)!r}, batch_size=5, {location.python_kwargs()})
        upsert, calls = index.backend.upsert, []
        def dying_upsert(*args):
            calls.append(1)
            if len(calls) == 4:
                os._exit(3)
            return upsert(*args)
        index.backend.upsert = dying_upsert
        index.add(list(torch.randn(50, 8)), ids=list(range(50)))
        """
    )
    assert completed.returncode == 3, completed.stderr
    with SimilarityIndex.open(model, **location.kwargs()) as index:
        assert index.count() == 15
        hits = index.search(vectors=np.ones((1, 8)), limit=50)[0]
        assert sorted(hit.id for hit in hits) == list(range(15))


def test_open_missing_index(location):
    with pytest.raises(IndexNotFoundError, match="create it first"):
        SimilarityIndex.open(make_model(), **location.kwargs())


def test_create_over_an_existing_index(location):
    SimilarityIndex.create(make_model(), distance="cosine", **location.kwargs()).close()
    with pytest.raises(IndexConfigError, match="already exists"):
        SimilarityIndex.create(make_model(), distance="cosine", **location.kwargs())
    SimilarityIndex.create(
        make_model(), distance="cosine", recreate=True, **location.kwargs()
    ).close()


def test_dimension_and_distance_mismatch(location):
    SimilarityIndex(make_model(), distance="cosine", **location.kwargs()).close()
    with pytest.raises(IndexConfigError, match="size 8 but the model outputs 6"):
        SimilarityIndex(make_model(dim=6), **location.kwargs())
    with pytest.raises(IndexConfigError, match="distance 'cosine', not 'euclidean'"):
        SimilarityIndex(make_model(), distance="euclidean", **location.kwargs())
    with SimilarityIndex(make_model(), **location.kwargs()) as index:
        with pytest.raises(IndexConfigError, match=r"shape \(n, 8\)"):
            index.search(vectors=np.zeros((2, 6)))
        with pytest.raises(IndexConfigError, match=r"shape \(n, 8\)"):
            index.add_vectors(np.zeros((2, 6)))


def test_creating_needs_a_distance(location):
    with pytest.raises(ValueError, match="distance"):
        SimilarityIndex(make_model(), **location.kwargs())
    with pytest.raises(ValueError, match="unknown distance"):
        SimilarityIndex(make_model(), distance="hamming", **location.kwargs())


def test_bad_ids_and_payloads(location):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        with pytest.raises(ValueError, match="UUID"):
            index.add(make_objects(1), ids=["car-1"])
        with pytest.raises(ValueError, match="ids has 1 entries for 2"):
            index.add(make_objects(2), ids=[1])
        with pytest.raises(ValueError, match="exactly one"):
            index.search()
        assert index.count() == 0


def test_a_second_handle_on_an_embedded_index_is_refused(tmp_path):
    path = tmp_path / "index"
    with SimilarityIndex(make_model(), path=path, distance="cosine"):
        with pytest.raises(IndexLockedError, match="already open"):
            SimilarityIndex(make_model(), path=path)
        completed = run_python(
            f"""
            from quaterion_models.index import SimilarityIndex, IndexLockedError
            from tests.quaterion_models.index.conftest import make_model
            try:
                SimilarityIndex(make_model(), path={str(path)!r})
            except IndexLockedError as err:
                print("LOCKED", err)
            """
        )
        assert "LOCKED" in completed.stdout, completed.stderr
    with SimilarityIndex.open(make_model(), path=path) as index:  # released on close
        assert index.count() == 0


def test_embedded_errors_for_odd_directories(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(IndexNotFoundError, match="is a file"):
        SimilarityIndex(make_model(), path=not_a_dir, distance="cosine")
    foreign = tmp_path / "foreign"
    (foreign / "shard").mkdir(parents=True)
    with pytest.raises(IndexNotFoundError, match="not created by SimilarityIndex"):
        SimilarityIndex(make_model(), path=foreign, distance="cosine")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not quaterion index metadata"):
        SimilarityIndex(make_model(), path=tmp_path / "bad")


def test_embedded_metadata_is_written_before_the_shard(tmp_path):
    """A crash after the metadata but before the shard leaves an index that still opens."""
    path = tmp_path / "index"
    SimilarityIndex(make_model(), path=path, distance="manhattan").close()
    data = json.loads((path / "index.json").read_text())
    assert data["distance"] == "manhattan" and data["dim"] == 8
    assert data["fingerprint"] == servable_fingerprint(make_model())
    assert not [p for p in os.listdir(path) if p.endswith(".tmp")]
    import shutil

    shutil.rmtree(path / "shard")
    with SimilarityIndex.open(make_model(), path=path) as index:
        index.add(make_objects(3), ids=[1, 2, 3])
        assert index.count() == 3


def test_unreachable_server_is_reported_quickly():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}.*did not answer"):
        SimilarityIndex(make_model(), url=f"http://127.0.0.1:{port}", timeout=1, distance="cosine")


@pytest.mark.parametrize(
    "url, error, reason",
    [
        ("not a url", ValueError, r"url 'not a url' is not a Qdrant server URL \(.*\); pass one"),
        (6333, TypeError, r"url must be a Qdrant server URL \(str\).*got 6333"),
    ],
)
def test_a_url_that_is_not_a_url_is_named(url, error, reason):
    with pytest.raises(error, match=reason):
        SimilarityIndex(make_model(), url=url, timeout=1, distance="cosine")


def test_exactly_one_location():
    with pytest.raises(ValueError, match="exactly one location"):
        SimilarityIndex(make_model(), distance="cosine")
    with pytest.raises(ValueError, match="exactly one location"):
        SimilarityIndex(make_model(), path="x", url="http://localhost:6333", distance="cosine")


def test_copy_to_the_other_backend(location, tmp_path):
    """Moving an index (embedded -> server, or back) keeps ids, vectors and payloads."""
    import qdrant_client

    model, objects = make_model(), make_objects(45)
    other = (
        {"client": qdrant_client.QdrantClient(":memory:")}
        if location.backend == "embedded"
        else {"path": tmp_path / "copy"}
    )
    with SimilarityIndex(model, distance="dot_product", **location.kwargs()) as source:
        source.add(objects, payloads=[{"i": i} for i in range(45)], ids=list(range(45)))
        with SimilarityIndex(model, distance="dot_product", show_progress=False, **other) as target:
            assert source.copy_to(target, batch_size=10) == 45
            assert target.count() == 45
            expected = source.search(objects[:5], limit=5, exact=True)
            copied = target.search(objects[:5], limit=5, exact=True)
            for got, want in zip(copied, expected):  # scores: float32 vs float64 arithmetic
                assert [(h.id, h.payload) for h in got] == [(h.id, h.payload) for h in want]
                np.testing.assert_allclose(
                    [h.score for h in got], [h.score for h in want], rtol=1e-5
                )
        with SimilarityIndex(make_model(seed=3), distance="dot_product", show_progress=False,
                             path=tmp_path / "wrong") as wrong:  # fmt: skip
            with pytest.raises(ModelMismatchError, match="cannot copy"):
                source.copy_to(wrong)
