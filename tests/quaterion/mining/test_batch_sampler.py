"""HardNegativeBatchSampler: anchors once per epoch, their negatives and a positive in batch."""

import numpy as np
import pytest
import torch

from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
from quaterion.mining import HardNegativeBatchSampler, mine_hard_negatives


def _mined(n=45, groups=7):
    items = torch.randn(n, 5, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(n) % groups
    labels[-1] = 100  # singleton: no partner
    return mine_hard_negatives(items, groups=labels, num_negatives=3, show_progress=False), labels


@pytest.mark.parametrize("drop_last", [False, True])
def test_invariants(drop_last):
    mined, labels = _mined()
    sampler = HardNegativeBatchSampler(mined, anchors_per_batch=8, seed=1, drop_last=drop_last)
    for _ in range(2):
        seen = []
        batches = list(sampler.batches_with_anchors())
        assert len(batches) == len(sampler)
        for anchors, batch in batches:
            assert len(batch) == len(set(batch))
            for anchor in anchors:
                assert anchor in batch
                assert set(mined.indices[anchor].tolist()) - {-1} <= set(batch)
                mates = [j for j in batch if j != anchor and labels[j] == labels[anchor]]
                assert mates or anchor == 44
            seen.extend(anchors)
        expected = 45 - (45 % 8 if drop_last else 0)
        assert len(seen) == expected and len(set(seen)) == expected


def test_epochs_differ_and_seed_reproduces():
    mined, _ = _mined()
    a = HardNegativeBatchSampler(mined, anchors_per_batch=8, seed=1)
    b = HardNegativeBatchSampler(mined, anchors_per_batch=8, seed=1)
    first, second = list(a), list(a)
    assert first == list(b) and first != second


def test_feeds_a_group_loader():
    mined, labels = _mined()
    data = [SimilarityGroupSample(obj=i, group=int(g)) for i, g in enumerate(labels)]
    sampler = HardNegativeBatchSampler(mined, anchors_per_batch=8, shuffle=False)
    loader = GroupSimilarityDataLoader(data, batch_sampler=sampler)
    assert sum(1 for _ in loader) == len(sampler)


def test_bad_arguments():
    mined, _ = _mined()
    with pytest.raises(ValueError, match="anchors_per_batch"):
        HardNegativeBatchSampler(mined, anchors_per_batch=0)
    mined.groups = None
    with pytest.raises(ValueError, match="groups"):
        HardNegativeBatchSampler(mined, anchors_per_batch=4)
    pairs = mine_hard_negatives(
        torch.randn(3, 4), torch.randn(9, 4), positives=[0, 1, 2], show_progress=False
    )
    with pytest.raises(ValueError, match="dataset positions"):  # indices of another corpus
        HardNegativeBatchSampler(pairs, anchors_per_batch=2, with_positive=False)


def test_groups_given_as_labels_or_of_another_length_are_named():
    """String labels failed inside torch ("too many dimensions 'str'")."""
    mined, labels = _mined()
    names = [f"label-{int(g)}" for g in labels]
    with pytest.raises(TypeError, match="groups must be integer group ids.*numpy.unique"):
        HardNegativeBatchSampler(mined, anchors_per_batch=8, groups=names)
    with pytest.raises(ValueError, match=r"one group id per item \(45\), got shape \(44,\)"):
        HardNegativeBatchSampler(mined, anchors_per_batch=8, groups=labels[:-1].tolist())
    as_ints = np.unique(names, return_inverse=True)[1]  # the fix the message names
    given = HardNegativeBatchSampler(mined, anchors_per_batch=8, groups=as_ints, seed=2)
    for anchors, batch in given.batches_with_anchors():
        for anchor in anchors:  # each anchor's partner: another item with its label
            mates = [j for j in batch if j != anchor and names[j] == names[anchor]]
            assert mates or anchor == 44


def test_refuses_to_run_with_several_ranks(monkeypatch):
    import torch.distributed as dist

    from quaterion.mining import HardNegativeBatchSampler, mine_hard_negatives

    embeddings = torch.nn.functional.normalize(
        torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=1
    )
    mined = mine_hard_negatives(
        embeddings, groups=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), num_negatives=2
    )
    sampler = HardNegativeBatchSampler(mined, anchors_per_batch=2)
    assert len(list(sampler)) == 4  # one process: four batches of two anchors
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *args, **kwargs: 2)
    with pytest.raises(RuntimeError, match="does not shard"):
        next(iter(sampler))
