import pickle

import pytest
from torch.utils.data import DataLoader

from quaterion.dataset.indexing_dataset import IndexingDataset, IndexingIterableDataset, hashit
from tests.quaterion.dataset.conftest import (
    CountingDataset,
    ShardedGroups,
    SizedShardedGroups,
    reference_id,
)


def test_hash_vectors_are_normative():
    assert hashit(0, "train") == 10637058102396794888
    assert hashit(1, "train") == 656880260426136797
    assert hashit(0, "val") == 6713582822252877785
    assert hashit((None, 0), "train") == 10112051316897960959


def test_indexing_dataset_ids_and_items():
    data = CountingDataset(["p", "q", "r"])
    layer = IndexingDataset(data, salt="train")
    assert len(layer) == 3
    assert layer[0] == (10637058102396794888, "p")
    assert layer[2] == (reference_id(2, "train"), "r")
    layer.set_salt("val")
    assert layer.salt == "val"
    assert layer[0] == (6713582822252877785, "p")


def test_indexing_dataset_random_salt_fixed_at_construction():
    layer = IndexingDataset(["p"])
    assert isinstance(layer.salt, int) and 0 <= layer.salt <= 2**31
    first = layer[0][0]
    assert layer[0][0] == first == reference_id(0, layer.salt)
    copy = pickle.loads(pickle.dumps(layer))
    assert copy[0][0] == first  # a worker's copy agrees on the ids


def test_indexing_dataset_skip_read():
    data = CountingDataset(["p", "q"])
    layer = IndexingDataset(data, salt="s")
    layer.set_skip_read(True)
    assert layer[1] == (reference_id(1, "s"), None)
    assert data.reads == 0
    layer.set_skip_read(False)
    assert layer[1] == (reference_id(1, "s"), "q")
    assert data.reads == 1


def test_indexing_dataset_unsized_len():
    with pytest.raises(NotImplementedError):
        len(IndexingDataset(ShardedGroups(3)))


def test_iterable_main_process_ids():
    layer = IndexingIterableDataset(ShardedGroups(4), salt="train")
    items = list(layer)
    assert [hash_id for hash_id, _ in items] == [reference_id((None, i), "train") for i in range(4)]
    assert items[0][0] == 10112051316897960959
    assert [sample.obj for _, sample in items] == ["obj0", "obj1", "obj2", "obj3"]
    with pytest.raises(NotImplementedError):
        len(layer)


def test_iterable_skip_read_sized_and_unsized():
    sized = IndexingIterableDataset(SizedShardedGroups(3), salt=7)
    sized.set_skip_read(True)
    assert len(sized) == 3
    assert list(sized) == [(reference_id((None, i), 7), None) for i in range(3)]
    unsized = IndexingIterableDataset(ShardedGroups(3), salt=7)
    unsized.set_skip_read(True)  # unknown length: has to read
    assert [item.obj for _, item in unsized] == ["obj0", "obj1", "obj2"]


def test_iterable_getitem_for_indexable_dataset():
    layer = IndexingIterableDataset(["p", "q"], salt="train")
    assert layer[1] == (656880260426136797, "q")


def test_iterable_worker_ids_use_id_and_count():
    layer = IndexingIterableDataset(ShardedGroups(5), salt="w")
    loader = DataLoader(layer, batch_size=None, num_workers=2)
    got = sorted(((hash_id, sample.obj) for hash_id, sample in loader), key=lambda p: p[1])
    expected = []
    for worker in range(2):
        for position, i in enumerate(range(worker, 5, 2)):
            expected.append((reference_id(((worker, 2), position), "w"), f"obj{i}"))
    assert got == sorted(expected, key=lambda pair: pair[1])
