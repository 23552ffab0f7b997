"""GroupCycleBatchSampler: sentence-transformers' SentenceLabelDataset order, as batches."""

import numpy as np
import pytest
import torch

from quaterion.dataset import (
    GroupCycleBatchSampler,
    GroupSimilarityDataLoader,
    SimilarityGroupSample,
)


def sentence_transformers_batches(groups, batch_size, per_group, seed, epochs):
    """Record indices of the batches sentence-transformers' own classes yield: its
    ``SentenceLabelDataset`` read by a ``DataLoader(drop_last=True)``, iterated again
    after each pass as its ``fit`` loop does, numpy's global generator seeded first."""
    from sentence_transformers import InputExample
    from sentence_transformers.sentence_transformer.datasets import SentenceLabelDataset
    from torch.utils.data import DataLoader

    examples = [InputExample(guid=str(i), texts=["t"], label=g) for i, g in enumerate(groups)]
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        dataset = SentenceLabelDataset(examples, samples_per_label=per_group)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            drop_last=True,
            collate_fn=lambda batch: [int(example.guid) for example in batch],
        )
        return [[batch for batch in loader] for _ in range(epochs)]
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize(
    "sizes, batch_size, per_group, seed",
    [
        ([16] * 9, 32, 2, 42),  # the quick start's layout, scaled down
        ([5, 7, 2, 9, 4, 6, 3, 8], 8, 2, 1),  # odd sizes: records left over per cycle
        ([6, 3, 9, 4, 7, 5], 9, 3, 7),  # three per visit, epoch not a multiple of the batch
    ],
)
def test_batches_equal_sentence_transformers_sentence_label_dataset(
    sizes, batch_size, per_group, seed
):
    groups = [g for g, size in enumerate(sizes) for _ in range(size)]
    rng = np.random.RandomState(0)
    groups = [groups[i] * 10 + 3 for i in rng.permutation(len(groups))]  # shuffled, sparse ids
    sampler = GroupCycleBatchSampler(groups, batch_size, samples_per_group=per_group, seed=seed)
    ours = [list(sampler) for _ in range(3)]
    expected = sentence_transformers_batches(groups, batch_size, per_group, seed, epochs=3)
    assert ours == expected
    assert all(len(epoch) == len(sampler) > 0 for epoch in ours)


def test_each_cycle_visits_every_group_once_with_distinct_records():
    """Independent of sentence-transformers: with 4 groups of 6 records and 2 per visit,
    an epoch (24 records, 3 batches of 8) is 3 cycles; each cycle holds every group once,
    as 2 distinct records of it."""
    groups = torch.arange(24) % 4
    sampler = GroupCycleBatchSampler(groups, batch_size=8, seed=5)
    assert len(sampler) == 3
    for _ in range(2):  # two epochs
        stream = [index for batch in sampler for index in batch]
        assert len(stream) == 24
        for cycle in range(3):
            visits = stream[cycle * 8 : (cycle + 1) * 8]
            pairs = [visits[i : i + 2] for i in range(0, 8, 2)]
            assert sorted(int(groups[a]) for a, _ in pairs) == [0, 1, 2, 3]
            assert all(a != b and groups[a] == groups[b] for a, b in pairs)


def test_small_groups_are_left_out_with_a_warning():
    groups = [0, 0, 0, 1, 2, 2, 2, 2]
    with pytest.warns(UserWarning, match="1 group"):
        sampler = GroupCycleBatchSampler(groups, batch_size=2, seed=0)
    seen = {index for batch in sampler for index in batch}
    assert 3 not in seen and len(sampler) == 4  # 7 records used, rounded up to 4 visits of 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"batch_size": 2, "samples_per_group": 0}, ValueError, "samples_per_group"),
        ({"batch_size": 2, "seed": True}, TypeError, "seed"),
        ({"batch_size": 2, "seed": "1"}, TypeError, "seed"),
        ({"batch_size": 16}, ValueError, "fewer than one batch"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        GroupCycleBatchSampler([0, 0, 1, 1, 2, 2], **kwargs)


def test_groups_must_be_one_id_per_record():
    with pytest.raises(ValueError, match="one id per record"):
        GroupCycleBatchSampler(torch.zeros(4, 2), batch_size=2)


def test_refuses_to_run_with_several_ranks(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *args, **kwargs: 2)
    sampler = GroupCycleBatchSampler([0, 0, 1, 1], batch_size=2)
    with pytest.raises(RuntimeError, match="does not shard"):
        next(iter(sampler))


def test_loader_yields_the_sampled_records():
    samples = [SimilarityGroupSample(obj=f"text {i}", group=i % 3) for i in range(12)]
    groups = [sample.group for sample in samples]
    loader = GroupSimilarityDataLoader(
        samples, batch_sampler=GroupCycleBatchSampler(groups, batch_size=4, seed=3)
    )
    expected = list(GroupCycleBatchSampler(groups, batch_size=4, seed=3))
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    for (_, features, labels), indices in zip(batches, expected):
        assert features == [samples[i].obj for i in indices]
        assert labels["groups"].tolist() == [groups[i] for i in indices]


@pytest.mark.parametrize(
    "groups, error, message",
    [
        (
            [{"id": 1}, {"id": 1}, {"id": 2}, {"id": 2}],
            TypeError,
            r"group ids must be hashable.*dict",
        ),
        (torch.tensor(3), TypeError, "one id per record.*0-d"),
        (np.array(3), TypeError, "one id per record.*0-d"),
        (7, TypeError, "one id per record.*int"),
    ],
)
def test_groups_that_cannot_be_read_as_ids_raise_clear_errors(groups, error, message):
    with pytest.raises(error, match=message):
        GroupCycleBatchSampler(groups, batch_size=2)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_outside_numpys_range_names_the_sampler(seed):
    with pytest.raises(ValueError, match=r"GroupCycleBatchSampler: seed must be in \[0, 2\*\*32"):
        GroupCycleBatchSampler([0, 0, 1, 1], batch_size=2, seed=seed)


def test_numpy_integer_seed_draws_as_the_int():
    groups = [g for g in range(5) for _ in range(3)]
    expected = list(GroupCycleBatchSampler(groups, batch_size=4, seed=11))
    assert list(GroupCycleBatchSampler(groups, batch_size=4, seed=np.int64(11))) == expected


@pytest.mark.parametrize("count", [10, 14])
def test_a_loader_whose_dataset_length_differs_from_the_groups_is_refused(count):
    """Fewer groups than records would silently never sample the last records; more would
    index past the dataset in a worker."""
    samples = [SimilarityGroupSample(obj=f"text {i}", group=i % 3) for i in range(12)]
    groups = [i % 3 for i in range(count)]
    sampler = GroupCycleBatchSampler(groups, batch_size=4, seed=3)
    with pytest.raises(ValueError, match=f"{count} group ids.*12 records"):
        GroupSimilarityDataLoader(samples, batch_sampler=sampler)


def test_one_group_only_warns_that_batches_hold_no_negatives():
    # a group loss over such batches has nothing to contrast (TripletLoss: constant loss)
    with pytest.warns(UserWarning, match="only one group.*no negatives"):
        sampler = GroupCycleBatchSampler([5] * 6, batch_size=4, seed=0)
    assert [len(set(batch)) for batch in sampler] == [4]
    with pytest.warns(UserWarning) as record:
        GroupCycleBatchSampler([5] * 6 + [6], batch_size=4, seed=0)  # 6 has too few records
    messages = [str(warning.message) for warning in record]
    assert any("left out" in m for m in messages) and any("only one group" in m for m in messages)


@pytest.mark.parametrize("done", [0, 1, 3])
def test_a_loaded_state_continues_the_order_of_an_uninterrupted_sampler(tmp_path, done):
    """A fresh sampler loading the state of one that drew ``done`` epochs (through a file
    read with weights_only=True) draws the epochs the uninterrupted sampler draws next."""
    groups = [5, 7, 2, 9, 4, 6, 3, 8] * 3 + [5, 7]
    straight = GroupCycleBatchSampler(groups, batch_size=6, seed=11)
    expected = [list(straight) for _ in range(done + 3)]
    first = GroupCycleBatchSampler(groups, batch_size=6, seed=11)
    assert [list(first) for _ in range(done)] == expected[:done]
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = GroupCycleBatchSampler(groups, batch_size=6, seed=11)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert resumed.epochs_drawn == done
    assert [list(resumed) for _ in range(3)] == expected[done:]
    assert resumed.epochs_drawn == done + 3


def test_a_state_of_another_layout_is_refused():
    state = GroupCycleBatchSampler([0, 0, 1, 1, 2, 2], batch_size=4).state_dict()
    for other, changed in (
        (GroupCycleBatchSampler([0, 0, 1, 1, 2, 2, 2], batch_size=4), "groups, records"),
        (GroupCycleBatchSampler([0, 0, 1, 1, 2, 2], batch_size=2), "batch_size"),
        (GroupCycleBatchSampler([0, 1, 0, 1, 2, 2], batch_size=4), "groups"),  # same sizes
    ):
        with pytest.raises(ValueError, match=f"with other {changed} than this one"):
            other.load_state_dict(state)
    with pytest.raises(ValueError, match="not a state written by GroupCycleBatchSampler"):
        GroupCycleBatchSampler([0, 0, 1, 1], batch_size=2).load_state_dict({"order": [0, 1]})


def test_loader_state_is_the_batch_samplers():
    """A GroupSimilarityDataLoader hands its batch sampler's state to Lightning; one whose
    batch sampler keeps none has the state None, and mixing the two warns."""
    samples = [SimilarityGroupSample(obj=f"text {i}", group=i % 3) for i in range(12)]
    groups = [sample.group for sample in samples]
    loader = GroupSimilarityDataLoader(
        samples, batch_sampler=GroupCycleBatchSampler(groups, batch_size=4, seed=3)
    )
    list(loader)
    state = loader.state_dict()
    assert state["batch_sampler"]["epochs_drawn"] == 1
    fresh = GroupCycleBatchSampler(groups, batch_size=4, seed=3)
    GroupSimilarityDataLoader(samples, batch_sampler=fresh).load_state_dict(state)
    assert list(fresh) == list(loader.batch_sampler)
    plain = GroupSimilarityDataLoader(samples, batch_size=4, shuffle=True)
    assert plain.state_dict() == {"batch_sampler": None}
    with pytest.warns(UserWarning, match="keeps none, so the state is left unused"):
        plain.load_state_dict(state)
    with pytest.warns(UserWarning, match="holds no batch sampler state"):
        loader.load_state_dict({"batch_sampler": None})
    with pytest.raises(ValueError, match="'batch_sampler' entry"):
        loader.load_state_dict([1, 2])


def test_a_state_noted_inside_an_epoch_resumes_after_the_batches_trained():
    """With note_batches_trained(2) the state resumes at the epoch's third batch; re-saved
    before drawing it is the same state; note_batches_trained(None) is an epoch's end."""
    groups = [0, 1, 2, 3, 4] * 6
    straight = GroupCycleBatchSampler(groups, batch_size=6, seed=2)
    expected = [list(straight) for _ in range(3)]
    assert len(expected[0]) == 5
    first = GroupCycleBatchSampler(groups, batch_size=6, seed=2)
    batches = iter(first)
    taken = [next(batches) for _ in range(2)]
    first.note_batches_trained(2)
    state = first.state_dict()
    assert taken == expected[0][:2] and state["partial"]["batches"] == 2
    resumed = GroupCycleBatchSampler(groups, batch_size=6, seed=2)
    resumed.load_state_dict(state)
    assert resumed.epochs_drawn == 0
    again = resumed.state_dict()
    assert again["partial"]["batches"] == 2 and again["epochs_drawn"] == 1
    assert (
        again["partial"]["generator"]["keys"].tolist()
        == state["partial"]["generator"]["keys"].tolist()
    )
    assert list(resumed) == expected[0][2:]
    assert [list(resumed) for _ in range(2)] == expected[1:]
    whole = GroupCycleBatchSampler(groups, batch_size=6, seed=2)
    list(whole)
    whole.note_batches_trained(None)
    assert whole.state_dict()["partial"] is None
    damaged = dict(state, partial=dict(state["partial"], batches=5))
    with pytest.raises(ValueError, match="5 batches of an epoch of 5"):
        GroupCycleBatchSampler(groups, batch_size=6, seed=2).load_state_dict(damaged)


@pytest.mark.parametrize("wrap", [torch.tensor, np.array, np.int32])
def test_zero_d_tensor_and_array_ids_group_like_the_ints(wrap):
    # 0-d tensors hash by identity: each record became its own group (all left out)
    ids = [i % 3 for i in range(12)]
    expected = list(GroupCycleBatchSampler(ids, batch_size=4, seed=5))
    assert list(GroupCycleBatchSampler([wrap(i) for i in ids], batch_size=4, seed=5)) == expected


def test_an_id_with_several_values_is_refused():
    with pytest.raises(TypeError, match=r"must be a scalar, got a Tensor of shape \(1,\)"):
        GroupCycleBatchSampler([torch.tensor([i % 2]) for i in range(8)], batch_size=4)
