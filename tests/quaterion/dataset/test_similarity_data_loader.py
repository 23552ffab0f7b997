import numpy as np
import pytest
import torch

from quaterion.dataset import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityDataLoader,
    SimilarityGroupSample,
    SimilarityPairSample,
)
from quaterion.dataset.label_cache_dataset import (
    LabelCacheDataset,
    LabelCacheIterableDataset,
    LabelCacheMode,
)
from quaterion.dataset.train_collator import TrainCollator
from tests.quaterion.dataset.conftest import (
    CountingDataset,
    ShardedGroups,
    SizedShardedGroups,
    reference_id,
)


def assert_labels_equal(got, expected):
    assert list(got) == list(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        torch.testing.assert_close(got[key], expected[key])


def test_pairs_collate_labels_spec_example():
    batch = [SimilarityPairSample("a", "b", 1.0, 0), SimilarityPairSample("c", "d", 0.0, 1)]
    labels = PairsSimilarityDataLoader.collate_labels(batch)
    assert list(labels) == ["pairs", "labels", "subgroups"]
    assert_labels_equal(
        labels,
        {
            "pairs": torch.tensor([[0, 2], [1, 3]], dtype=torch.int64),
            "labels": torch.tensor([1.0, 0.0], dtype=torch.float32),
            "subgroups": torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float32),
        },
    )


def test_group_collate_labels_spec_example():
    batch = [
        SimilarityGroupSample("orange", 0),
        SimilarityGroupSample("lemon", 0),
        SimilarityGroupSample("apple", 1),
    ]
    labels = GroupSimilarityDataLoader.collate_labels(batch)
    assert_labels_equal(labels, {"groups": torch.tensor([0, 0, 1], dtype=torch.int64)})


def test_integer_like_groups_and_subgroups_accepted():
    batch = [SimilarityGroupSample("a", np.int64(4)), SimilarityGroupSample("b", torch.tensor(7))]
    assert GroupSimilarityDataLoader.collate_labels(batch)["groups"].tolist() == [4, 7]
    pairs = [SimilarityPairSample("a", "b", np.float32(0.5), np.int32(3))]
    labels = PairsSimilarityDataLoader.collate_labels(pairs)
    assert labels["subgroups"].tolist() == [3.0, 3.0] and labels["labels"].tolist() == [0.5]


def test_pairs_iteration_yields_ids_features_labels(pair_samples):
    loader = PairsSimilarityDataLoader(pair_samples, batch_size=3)
    loader.set_salt("train")
    batches = list(loader)
    assert len(batches) == 3
    ids, features, labels = batches[0]
    assert len(ids) == 6 and all(type(i) is int for i in ids)
    assert features == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert ids[:3] == [reference_id(i, "train") for i in range(3)]
    assert all(ids[k + 3] == ids[k] + 1 for k in range(3))
    assert_labels_equal(
        labels,
        {
            "pairs": torch.tensor([[0, 3], [1, 4], [2, 5]]),
            "labels": torch.tensor([s.score for s in pair_samples[:3]]),
            "subgroups": torch.tensor([float(s.subgroup) for s in pair_samples[:3]] * 2),
        },
    )
    _, last_features, last_labels = batches[-1]  # 7 = 3 + 3 + 1
    assert last_features == ["a6", "b6"] and last_labels["pairs"].tolist() == [[0, 1]]


def test_group_iteration_ids_unchanged(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=4)
    loader.set_salt("val")
    ids, features, labels = next(iter(loader))
    assert ids == [reference_id(i, "val") for i in range(4)]
    assert features == ["x0", "x1", "x2", "x3"]
    assert labels["groups"].tolist() == [0, 1, 2, 0]


def test_salts_give_normative_and_reproducible_ids(group_samples):
    first = GroupSimilarityDataLoader(group_samples, batch_size=2)
    second = GroupSimilarityDataLoader(group_samples, batch_size=2)
    first.set_salt("train")
    second.set_salt("train")
    ids_first = [i for batch in first for i in batch[0]]
    assert ids_first[:2] == [10637058102396794888, 656880260426136797]
    assert ids_first == [i for batch in second for i in batch[0]]
    second.set_salt("val")
    ids_val = [i for batch in second for i in batch[0]]
    assert ids_val[0] == 6713582822252877785
    assert set(ids_val).isdisjoint(ids_first)


def test_layers_original_params_and_full_cache_flag(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2, shuffle=False, drop_last=True)
    assert isinstance(loader.dataset, LabelCacheDataset)
    assert loader.dataset.dataset.dataset is group_samples
    assert loader.original_params == {
        "batch_size": 2,
        "shuffle": False,
        "drop_last": True,
        "collate_fn": GroupSimilarityDataLoader.pre_collate_fn,
    }
    assert loader.collate_fn == GroupSimilarityDataLoader.pre_collate_fn
    assert loader.full_cache_used is False
    loader.set_label_cache_mode(LabelCacheMode.learn)
    assert loader.full_cache_used is True
    loader.set_label_cache_mode(LabelCacheMode.transparent)
    assert loader.full_cache_used is False
    iterable = GroupSimilarityDataLoader(ShardedGroups(3), batch_size=2)
    assert isinstance(iterable.dataset, LabelCacheIterableDataset)


def test_custom_collate_fn_recorded_and_none_means_default(group_samples):
    def my_collate(batch):
        return GroupSimilarityDataLoader.pre_collate_fn(batch)

    loader = GroupSimilarityDataLoader(group_samples, batch_size=2, collate_fn=my_collate)
    assert loader.original_params["collate_fn"] is my_collate is loader.collate_fn
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2, collate_fn=None)
    assert loader.original_params["collate_fn"] == GroupSimilarityDataLoader.pre_collate_fn


def test_collate_fn_assignable_and_train_collator_argument(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    collator = TrainCollator(
        loader.original_params["collate_fn"], {"e": list}, {"e": lambda f: [{}] * len(f)}
    )
    loader.collate_fn = collator
    assert loader.collate_fn is collator
    rebuilt = GroupSimilarityDataLoader(loader.dataset, batch_size=2, collate_fn=collator)
    assert rebuilt.collate_fn is collator
    assert rebuilt.original_params["collate_fn"] == GroupSimilarityDataLoader.pre_collate_fn


def test_label_cache_through_loader(tmp_path):
    data = CountingDataset([SimilarityPairSample(f"a{i}", f"b{i}", i % 2, i % 3) for i in range(5)])
    loader = PairsSimilarityDataLoader(data, batch_size=2)
    loader.set_salt("train")
    loader.set_label_cache_mode(LabelCacheMode.learn)
    learned = list(loader)
    reads = data.reads
    assert reads == 5
    loader.set_skip_read(True)
    loader.set_label_cache_mode(LabelCacheMode.read)
    served = list(loader)
    assert data.reads == reads
    for (ids, _, labels), (ids2, features2, labels2) in zip(learned, served):
        assert ids == ids2
        assert all(f is None for f in features2)
        assert_labels_equal(labels2, labels)
    loader.save_label_cache(str(tmp_path / "cache" / "train_labels"))

    fresh_data = CountingDataset(data.items)
    fresh = PairsSimilarityDataLoader(fresh_data, batch_size=2)
    fresh.set_salt("train")
    fresh.load_label_cache(str(tmp_path / "cache" / "train_labels"))
    fresh.set_skip_read(True)
    fresh.set_label_cache_mode(LabelCacheMode.read)
    restored = list(fresh)
    assert fresh_data.reads == 0
    for (ids, _, labels), (ids2, _, labels2) in zip(learned, restored):
        assert ids == ids2
        assert_labels_equal(labels2, labels)


def expected_rows(size, num_workers, salt):
    """(id, obj, group) that ShardedGroups yields through the indexing layer, by hand."""
    if num_workers == 0:
        shards = [(None, range(size))]
    else:
        shards = [((w, num_workers), range(w, size, num_workers)) for w in range(num_workers)]
    rows = [
        (reference_id((descriptor, position), salt), f"obj{i}", i % 3)
        for descriptor, items in shards
        for position, i in enumerate(items)
    ]
    return sorted(rows, key=lambda row: row[1])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_dataset_with_workers(num_workers):
    loader = GroupSimilarityDataLoader(ShardedGroups(6), batch_size=2, num_workers=num_workers)
    loader.set_salt("train")
    rows = []
    for ids, features, labels in loader:
        rows.extend(zip(ids, features, labels["groups"].tolist()))
    assert len(rows) == 6
    assert sorted(rows, key=lambda row: row[1]) == expected_rows(6, num_workers, "train")


def test_map_dataset_with_workers_same_ids(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=3, num_workers=2)
    loader.set_salt("train")
    ids = [i for batch in loader for i in batch[0]]
    assert ids == [reference_id(i, "train") for i in range(len(group_samples))]


def test_sized_iterable_skip_read_yields_no_objects():
    loader = GroupSimilarityDataLoader(SizedShardedGroups(3), batch_size=3)
    loader.set_salt("s")
    loader.set_label_cache_mode(LabelCacheMode.learn)
    ((ids, _, labels),) = list(loader)
    loader.set_skip_read(True)
    loader.set_label_cache_mode(LabelCacheMode.read)
    ((ids2, features2, labels2),) = list(loader)
    assert ids2 == ids == [reference_id((None, i), "s") for i in range(3)]
    assert features2 == [None] * 3
    assert_labels_equal(labels2, labels)


def test_base_loader_is_abstract_and_generic(group_samples):
    loader = SimilarityDataLoader(group_samples, batch_size=2)
    with pytest.raises(NotImplementedError):
        next(iter(loader))
    with pytest.raises(NotImplementedError):
        SimilarityDataLoader.flatten_objects([], [])
    assert SimilarityDataLoader[SimilarityPairSample] is not None
    assert issubclass(PairsSimilarityDataLoader, torch.utils.data.DataLoader)


def test_only_dataset_is_positional(group_samples):
    with pytest.raises(TypeError):
        GroupSimilarityDataLoader(group_samples, 2)  # type: ignore[misc]


def test_group_loader_rejects_pair_samples(pair_samples):
    loader = GroupSimilarityDataLoader(pair_samples, batch_size=2)
    with pytest.raises(TypeError) as info:
        next(iter(loader))
    message = str(info.value)
    assert "GroupSimilarityDataLoader" in message and "SimilarityGroupSample" in message
    assert "SimilarityPairSample" in message and "PairsSimilarityDataLoader" in message


def test_pairs_loader_rejects_group_samples_and_tuples(group_samples):
    with pytest.raises(
        TypeError, match="expects dataset items of type SimilarityPairSample.*SimilarityGroupSample"
    ):
        next(iter(PairsSimilarityDataLoader(group_samples, batch_size=2)))
    with pytest.raises(TypeError, match=r"item 1 of the batch is a tuple: \('img', 3\)"):
        PairsSimilarityDataLoader.collate_labels([SimilarityPairSample("a", "b"), ("img", 3)])
    with pytest.raises(TypeError, match="SimilarityGroupDataset"):
        GroupSimilarityDataLoader.flatten_objects([("img", 3)], [0])


@pytest.mark.parametrize("bad_group", ["cat", 1.5, 2.0, None, torch.tensor(1.0)])
def test_non_integer_groups_rejected(bad_group):
    batch = [SimilarityGroupSample("a", 0), SimilarityGroupSample("b", bad_group)]
    with pytest.raises(TypeError) as info:
        GroupSimilarityDataLoader.collate_labels(batch)
    message = str(info.value)
    assert "`group` must be an integer" in message and "sample 1" in message
    assert repr(bad_group) in message


def test_non_integer_subgroup_and_non_numeric_score_rejected():
    with pytest.raises(TypeError, match=r"`subgroup` must be an integer.*subgroup=0\.5"):
        PairsSimilarityDataLoader.collate_labels([SimilarityPairSample("a", "b", 1.0, 0.5)])
    with pytest.raises(TypeError, match=r"`score` must be a real number.*'high'"):
        PairsSimilarityDataLoader.collate_labels([SimilarityPairSample("a", "b", "high")])
    with pytest.raises(TypeError, match=r"`score` must be a real number.*\[1, 2\]"):
        PairsSimilarityDataLoader.collate_labels([SimilarityPairSample("a", "b", [1, 2])])


def test_invalid_label_cache_mode_rejected(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        loader.set_label_cache_mode("on")


@pytest.mark.parametrize("bad", [None, 3, (s for s in [])])
def test_non_dataset_rejected(bad):
    with pytest.raises(TypeError, match="dataset must be a map-style dataset"):
        GroupSimilarityDataLoader(bad, batch_size=2)


@pytest.mark.slow
def test_iterable_dataset_with_spawned_workers():
    """Everything handed to workers is pickled (spawn / forkserver start methods)."""
    loader = GroupSimilarityDataLoader(
        ShardedGroups(4), batch_size=2, num_workers=2, multiprocessing_context="spawn"
    )
    loader.set_salt("train")
    rows = [row for ids, f, labels in loader for row in zip(ids, f, labels["groups"].tolist())]
    assert sorted(rows, key=lambda row: row[1]) == expected_rows(4, 2, "train")


def test_batch_size_none_is_refused_with_the_fix():
    # torch would hand the collate single samples; the loader failed deep inside with a TypeError
    samples = [SimilarityGroupSample(obj=i, group=i) for i in range(3)]
    with pytest.raises(ValueError, match="batch_size=None.*Pass an int batch_size"):
        GroupSimilarityDataLoader(samples, batch_size=None)


def test_batch_sampler_still_works_and_gives_its_batches():
    samples = [SimilarityGroupSample(obj=i, group=i % 3) for i in range(10)]
    sampler = torch.utils.data.BatchSampler(range(9), batch_size=3, drop_last=True)
    loader = GroupSimilarityDataLoader(samples, batch_sampler=sampler)
    got = [labels["groups"].tolist() for _, features, labels in loader]
    assert got == [[i % 3 for i in batch] for batch in sampler]


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter([SimilarityGroupSample(obj=i, group=i % 2) for i in range(4)])


@pytest.mark.parametrize(
    "option, named",
    [
        ({"shuffle": True}, "shuffle=True"),
        ({"sampler": [0, 1]}, "sampler"),
        ({"batch_sampler": [[0, 1]]}, "batch_sampler"),
    ],
)
def test_options_an_iterable_dataset_cannot_honour_are_named_with_the_fix(option, named):
    with pytest.raises(
        ValueError, match=f"{named} cannot be used with an IterableDataset.*Shuffle"
    ):
        GroupSimilarityDataLoader(_Stream(), **option)


def test_iterable_dataset_with_shuffle_false_keeps_its_order():
    loader = GroupSimilarityDataLoader(_Stream(), batch_size=3, shuffle=False)
    assert [features for _, features, _ in loader] == [[0, 1, 2], [3]]


def test_dict_rows_of_a_hugging_face_dataset_get_a_hint_to_build_samples():
    import datasets

    rows = datasets.Dataset.from_dict({"x": [[0.0], [1.0]], "g": [0, 1]})
    loader = GroupSimilarityDataLoader(rows, batch_size=2)
    with pytest.raises(
        TypeError, match="item 0 of the batch is a dict.*builds a SimilarityGroupSample"
    ):
        next(iter(loader))


class _HuggingFaceRows(torch.utils.data.Dataset):
    """The fix the hint names: build samples from the rows."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        row = self.rows[index]
        return SimilarityGroupSample(obj=row["x"], group=row["g"])


def test_a_hugging_face_dataset_mapped_to_samples_loads_its_rows():
    import datasets

    rows = datasets.Dataset.from_dict({"x": [[float(i)] for i in range(5)], "g": [3, 1, 3, 0, 1]})
    loader = GroupSimilarityDataLoader(_HuggingFaceRows(rows), batch_size=2)
    batches = [(features, labels["groups"].tolist()) for _, features, labels in loader]
    assert batches == [([[0.0], [1.0]], [3, 1]), ([[2.0], [3.0]], [3, 0]), ([[4.0]], [1])]
