"""Indexes left damaged (a crash mid-create, a foreign or corrupt binding), odd locations and
odd arguments: each opens, is recovered by ``recreate=True``, or fails with a clear error."""

import gc
import json
import shutil

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from quaterion_models.index import (
    IndexConfigError,
    IndexLockedError,
    IndexNotFoundError,
    SimilarityIndex,
)
from quaterion_models.index.embedded import SHARD_DIR, EmbeddedBackend
from tests.quaterion_models.index.conftest import make_model

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact")


def filled_index(path, n: int = 3) -> None:
    with SimilarityIndex(make_model(), path=path, distance="cosine", show_progress=False) as index:
        index.add_vectors(np.eye(8)[:n], ids=list(range(n)))


def test_a_shard_whose_creation_was_cut_short_opens(tmp_path):
    """The shard directory exists but its config was never written (killed inside create):
    the index opens empty and usable instead of reporting a lock nobody holds."""
    path = tmp_path / "index"
    filled_index(path, n=0)
    (path / SHARD_DIR / "edge_config.json").unlink()
    with SimilarityIndex.open(make_model(), path=path, show_progress=False) as index:
        assert index.count() == 0
        index.add_vectors(np.eye(8)[:2], ids=[4, 5])
        assert [hit.id for hit in index.search(vectors=np.eye(8)[:1], limit=1)[0]] == [4]


@pytest.mark.parametrize(
    "damage",
    [
        "no metadata",
        "invalid json",
        "metadata of another program",
        "metadata missing a field",
        "metadata of another distance",
        "metadata of another size",
        "empty shard dir, no metadata",
    ],
)
def test_recreate_replaces_a_damaged_embedded_index(tmp_path, damage):
    """Every error that tells the user to pass ``recreate=True`` is cured by it."""
    path = tmp_path / "index"
    filled_index(path)
    metadata = path / "index.json"
    if damage == "no metadata":
        metadata.unlink()
    elif damage == "invalid json":
        metadata.write_text("{")
    elif damage == "metadata of another program":
        metadata.write_text(json.dumps({"format": "other"}))
    elif damage == "metadata missing a field":
        data = json.loads(metadata.read_text())
        del data["fingerprint"]
        metadata.write_text(json.dumps(data))
    elif damage.startswith("metadata of another"):  # Qdrant Edge's own error escaped
        data = json.loads(metadata.read_text())
        if "distance" in damage:
            data["distance"] = "dot_product"
        else:
            data["dim"] = 9
        metadata.write_text(json.dumps(data))
        with pytest.raises(IndexConfigError, match="shard does not match index.json"):
            SimilarityIndex.open(make_model(), path=path)
    else:
        shutil.rmtree(path)
        (path / SHARD_DIR).mkdir(parents=True)
    with pytest.raises((ValueError, IndexNotFoundError), match="index.json"):
        SimilarityIndex(make_model(), path=path, distance="cosine")
    (path / "notes.txt").write_text("mine")
    listing = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(ValueError, match="pass distance=... with recreate=True"):
        SimilarityIndex(make_model(), path=path, recreate=True)
    assert sorted(p.name for p in path.rglob("*")) == listing  # nothing dropped
    with SimilarityIndex(make_model(), path=path, distance="cosine", recreate=True) as index:
        assert index.count() == 0
        index.add_vectors(np.eye(8)[:2], ids=[7, 8])
    with SimilarityIndex.open(make_model(), path=path) as index:
        assert index.count() == 2
    assert (path / "notes.txt").read_text() == "mine"  # only the index's own files go


def test_metadata_missing_a_field_is_a_clear_error(tmp_path):
    path = tmp_path / "index"
    filled_index(path)
    data = json.loads((path / "index.json").read_text())
    del data["dim"]
    (path / "index.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="index.json.*'dim'"):
        SimilarityIndex.open(make_model(), path=path)


def test_recreate_never_deletes_a_file_given_as_the_path(tmp_path):
    path = tmp_path / "file"
    path.write_text("precious")
    with pytest.raises(IndexNotFoundError, match="is a file"):
        SimilarityIndex(make_model(), path=path, distance="cosine", recreate=True)
    assert path.read_text() == "precious"


def test_recreate_keeps_an_index_open_elsewhere(tmp_path):
    path = tmp_path / "index"
    filled_index(path)
    with SimilarityIndex.open(make_model(), path=path) as index:
        with pytest.raises(IndexLockedError, match="already open"):
            SimilarityIndex(make_model(), path=path, distance="cosine", recreate=True)
        assert index.count() == 3


def test_a_dangling_symlink_is_created_through(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    with SimilarityIndex(make_model(), path=link, distance="cosine", show_progress=False) as index:
        index.add_vectors(np.eye(8)[:1], ids=[1])
    assert link.is_symlink() and (tmp_path / "target" / "index.json").is_file()
    with SimilarityIndex.open(make_model(), path=tmp_path / "target") as index:
        assert index.count() == 1


def test_a_low_memory_shard_allows_one_handle(tmp_path):
    """Without a write-ahead log Qdrant Edge takes no lock: a second handle would write the
    same segments; it must be refused like on a shard with a log."""
    path = tmp_path / "index"
    first = SimilarityIndex(
        make_model(), backend=EmbeddedBackend(path, low_memory=True), distance="cosine"
    )
    with first:
        with pytest.raises(IndexLockedError, match="already open"):
            SimilarityIndex(make_model(), backend=EmbeddedBackend(path, low_memory=True))
        with pytest.raises(IndexLockedError, match="already open"):
            SimilarityIndex(make_model(), path=path)
    with SimilarityIndex(make_model(), backend=EmbeddedBackend(path, low_memory=True)) as index:
        assert index.count() == 0  # released on close


def test_an_index_dropped_without_close_frees_its_directory(tmp_path):
    def count_unclosed() -> int:
        return SimilarityIndex(make_model(), path=tmp_path / "index", distance="cosine").count()

    assert count_unclosed() == 0 and count_unclosed() == 0
    index = SimilarityIndex(make_model(), path=tmp_path / "index")
    del index
    gc.collect()
    SimilarityIndex.open(make_model(), path=tmp_path / "index").close()


def test_recreate_replaces_a_foreign_server_collection(tmp_path):
    client = QdrantClient(path=str(tmp_path / "server"))
    try:
        client.create_collection(
            "test", vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT)
        )
        kwargs = {"client": client, "collection": "test", "distance": "cosine"}
        with pytest.raises(IndexConfigError, match="recreate=True"):
            SimilarityIndex(make_model(), **kwargs)
        with SimilarityIndex(make_model(), recreate=True, **kwargs) as index:
            assert index.count() == 0 and index.info.dim == 8
    finally:
        client.close()


def test_deleting_no_ids_is_a_no_op(location):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add_vectors(np.eye(8)[:3], ids=[0, 1, 2])
        index.delete(ids=[])
        assert index.count() == 3


def test_search_arguments(location):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add_vectors(np.eye(8)[:3], ids=[0, 1, 2])
        with pytest.raises(ValueError, match="limit must be a positive int, got True"):
            index.search(vectors=np.eye(8)[:1], limit=True)
        hits = index.search(vectors=np.eye(8)[:1], limit=np.int64(2))[0]
        assert [hit.id for hit in hits][:1] == [0] and len(hits) == 2
        with pytest.raises(ValueError, match="NaN or inf") as error:
            index.search(vectors=np.full((1, 8), np.nan))
        assert "written" not in str(error.value)


def test_a_backend_bound_to_an_open_index_is_refused_without_harm(tmp_path):
    """Passing one backend object to a second SimilarityIndex while the first is open must
    not close the first one's storage."""
    backend = EmbeddedBackend(tmp_path / "index")
    with SimilarityIndex(make_model(), backend=backend, distance="cosine") as first:
        first.add_vectors(np.eye(8)[:2], ids=[1, 2])
        with pytest.raises(ValueError, match="already bound to an open SimilarityIndex"):
            SimilarityIndex(make_model(), backend=backend)
        assert first.count() == 2
    with SimilarityIndex(make_model(), backend=backend) as again:  # free once closed
        assert again.count() == 2


def test_an_index_created_meanwhile_by_another_process_is_not_overwritten(tmp_path):
    """Two processes create the same new directory: the one that comes second (it found
    nothing, then the other created and closed the index) must neither rebind the other's
    points to its model nor fail with Qdrant's message."""
    path = tmp_path / "index"
    late = EmbeddedBackend(path)
    assert late.load_info() is None
    filled_index(path)
    written = (path / "index.json").read_text()
    other = SimilarityIndex(make_model(seed=3), path=tmp_path / "other", distance="dot_product")
    other.close()
    with pytest.raises(IndexConfigError, match="created meanwhile"):
        late.create(other.info)
    late.close()
    assert (path / "index.json").read_text() == written
    with SimilarityIndex.open(make_model(), path=path) as index:
        assert index.count() == 3


def test_a_closed_index_says_so(location):
    index = SimilarityIndex(make_model(), distance="cosine", **location.kwargs())
    index.add_vectors(np.eye(8)[:2], ids=[1, 2])
    index.close()
    index.close()  # idempotent
    for use in (
        lambda: index.count(),
        lambda: index.search(vectors=np.eye(8)[:1]),
        lambda: index.add_vectors(np.eye(8)[:1], ids=[3]),
        lambda: index.vectors([1]),
        lambda: index.delete(ids=[1]),
    ):
        with pytest.raises(RuntimeError, match="is closed"):
            use()


@pytest.mark.parametrize("values", [[1, "x"], [True], [True, False], [1.5], []])
def test_a_list_filter_of_mixed_or_bool_values_is_a_clear_error(location, values):
    """Qdrant matches a list against all-str or all-int values; each backend failed in its
    own words (or, embedded, accepted bools the server refuses)."""
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add_vectors(np.eye(8)[:2], ids=[0, 1], payloads=[{"f": 1}, {"f": "x"}])
        with pytest.raises(TypeError, match=r"filter\['f'\].*all str or all int"):
            index.count(filter={"f": values})
        assert index.count(filter={"f": [1, 2]}) == 1
        assert index.count(filter={"f": ("x", "y")}) == 1


@pytest.mark.parametrize("bad", ["not-a-uuid", -1, 2**64, 1.0, True])
def test_invalid_ids_to_delete_or_read_are_named(location, bad):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add_vectors(np.eye(8)[:2], ids=[0, 1])
        for use in (lambda: index.delete(ids=[0, bad]), lambda: index.vectors([0, bad])):
            with pytest.raises((TypeError, ValueError), match=r"ids\[1\]"):
                use()
        assert index.count() == 2
        index.delete(ids=[5, "6ba7b810-9dad-11d1-80b4-00c04fd430c8"])  # valid, not stored
        assert index.count() == 2


def test_open_with_recreate_is_refused_before_anything_is_dropped(location):
    with SimilarityIndex(make_model(), distance="cosine", **location.kwargs()) as index:
        index.add_vectors(np.eye(8)[:2], ids=[0, 1])
    with pytest.raises(ValueError, match="mode='open' with recreate=True"):
        SimilarityIndex.open(make_model(), recreate=True, **location.kwargs())
    with SimilarityIndex.open(make_model(), **location.kwargs()) as index:
        assert index.count() == 2
