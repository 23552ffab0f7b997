import os
import pickle

import pytest
import torch

from quaterion.dataset import SimilarityGroupSample, SimilarityPairSample
from quaterion.dataset.indexing_dataset import IndexingDataset, IndexingIterableDataset
from quaterion.dataset.label_cache_dataset import (
    LabelCacheDataset,
    LabelCacheDatasetMixin,
    LabelCacheIterableDataset,
    LabelCacheMode,
)
from tests.quaterion.dataset.conftest import CountingDataset, ShardedGroups, reference_id


def test_mode_values():
    assert [(m.name, m.value) for m in LabelCacheMode] == [
        ("transparent", 0),
        ("learn", 1),
        ("read", 2),
    ]
    assert LabelCacheMode(2) is LabelCacheMode.read


def test_process_sample_strips_objects():
    group = SimilarityGroupSample(obj="img", group=3)
    pair = SimilarityPairSample("a", "b", 0.5, 2)
    assert LabelCacheDataset._process_sample(group) == SimilarityGroupSample(None, 3)
    assert LabelCacheDataset._process_sample(pair) == SimilarityPairSample(None, None, 0.5, 2)
    assert LabelCacheDataset._process_sample(("x", 1)) is None
    assert group.obj == "img" and pair.obj_a == "a"  # originals untouched


def test_process_item_modes():
    layer = LabelCacheDatasetMixin()
    sample = SimilarityGroupSample("x", 1)
    assert layer.mode is LabelCacheMode.transparent
    assert layer.process_item(5, sample) == (5, sample)
    layer.set_mode(LabelCacheMode.learn)
    assert layer.process_item(5, sample) == (5, sample)
    layer.set_mode(LabelCacheMode.read)
    assert layer.process_item(5, None) == (5, SimilarityGroupSample(None, 1))
    with pytest.raises(KeyError, match="not in the label cache"):
        layer.process_item(6, None)


def test_set_mode_accepts_values_and_rejects_others():
    layer = LabelCacheDatasetMixin()
    layer.set_mode(1)
    assert layer.mode is LabelCacheMode.learn
    with pytest.raises(ValueError, match="LabelCacheMode.read"):
        layer.set_mode("fast")


def test_map_layer_learn_then_read_without_reading_dataset():
    data = CountingDataset([SimilarityGroupSample(f"o{i}", i % 2) for i in range(4)])
    indexing = IndexingDataset(data, salt="s")
    layer = LabelCacheDataset(indexing)
    assert len(layer) == 4 and layer.dataset is indexing
    layer.set_mode(LabelCacheMode.learn)
    learned = [layer[i] for i in range(4)]
    assert learned == [(reference_id(i, "s"), data.items[i]) for i in range(4)]
    reads = data.reads
    indexing.set_skip_read(True)
    layer.set_mode(LabelCacheMode.read)
    served = [layer[i] for i in range(4)]
    assert data.reads == reads
    assert served == [(reference_id(i, "s"), SimilarityGroupSample(None, i % 2)) for i in range(4)]


def test_iterable_layer_learn_then_read():
    indexing = IndexingIterableDataset(ShardedGroups(3), salt="s")
    layer = LabelCacheIterableDataset(indexing)
    layer.set_mode(LabelCacheMode.learn)
    learned = list(layer)
    layer.set_mode(LabelCacheMode.read)
    served = list(layer)
    assert [h for h, _ in served] == [reference_id((None, i), "s") for i in range(3)]
    assert [s.group for _, s in served] == [s.group for _, s in learned] == [0, 1, 2]
    assert all(s.obj is None for _, s in served)
    with pytest.raises(NotImplementedError):
        len(layer)


def test_save_load_round_trip_and_atomicity(tmp_path):
    layer = LabelCacheDatasetMixin()
    layer.set_mode(LabelCacheMode.learn)
    layer.process_item(11, SimilarityPairSample("a", "b", 0.0, 1))
    path = tmp_path / "nested" / "dir" / "train_labels"
    layer.save(str(path))
    assert os.listdir(path.parent) == ["train_labels"]
    state = torch.load(path, weights_only=True)  # plain lists: nothing is unpickled
    assert state == {
        "ids": [11],
        "kinds": ["SimilarityPairSample"],
        "values": [{"obj_a": None, "obj_b": None, "score": 0.0, "subgroup": 1}],
    }
    fresh = LabelCacheDatasetMixin()
    fresh.load(str(path))
    fresh.set_mode(LabelCacheMode.read)
    assert fresh.process_item(11, None) == (11, SimilarityPairSample(None, None, 0.0, 1))


def test_save_bare_file_name_and_load_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    LabelCacheDatasetMixin().save("labels")
    assert (tmp_path / "labels").is_file()
    with pytest.raises(FileNotFoundError):
        LabelCacheDatasetMixin().load(str(tmp_path / "missing"))
    torch.save([1, 2], tmp_path / "bad")
    with pytest.raises(ValueError, match="expected the dict"):
        LabelCacheDatasetMixin().load(str(tmp_path / "bad"))


def test_layers_pickle_with_state():
    layer = LabelCacheDataset(IndexingDataset([SimilarityGroupSample("x", 0)], salt="s"))
    layer.set_mode(LabelCacheMode.learn)
    layer[0]
    copy = pickle.loads(pickle.dumps(layer))
    copy.set_mode(LabelCacheMode.read)
    assert copy[0] == (reference_id(0, "s"), SimilarityGroupSample(None, 0))


@pytest.mark.parametrize(
    "state",
    [
        {"ids": [1], "kinds": ["Unknown"], "values": [{}]},
        {"ids": [1], "kinds": ["SimilarityGroupSample"], "values": [{"label": 1}]},
        {"ids": [1, 2], "kinds": ["SimilarityGroupSample"], "values": [{"obj": None, "group": 1}]},
    ],
)
def test_a_damaged_label_file_is_a_clear_error(tmp_path, state):
    torch.save(state, tmp_path / "labels")
    with pytest.raises(ValueError, match="is damaged .*delete it to rebuild"):
        LabelCacheDatasetMixin().load(str(tmp_path / "labels"))
