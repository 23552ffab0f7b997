"""Re-creating a loader from its attributes, as Lightning 2.x does (q#191)."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from quaterion.dataset import GroupSimilarityDataLoader, PairsSimilarityDataLoader
from quaterion.dataset.label_cache_dataset import LabelCacheMode
from quaterion.dataset.train_collator import TrainCollator
from tests.quaterion.dataset.conftest import ShardedGroups, reference_id
from tests.quaterion.train.helpers import trainer


def collate_upper(features):
    return [None if f is None else f.upper() for f in features]


def empty_meta(features):
    return [{} for _ in features]


def flatten(batches):
    """Comparable form of pre-collate or TrainCollator batches."""
    out = []
    for first, second in ((b[0], b[1:]) for b in batches):
        if isinstance(first, dict):  # TrainCollator: (features, labels)
            out.append(
                (first["data"], first["meta"], {k: v.tolist() for k, v in second[0].items()})
            )
        else:  # pre-collate: (ids, features, labels)
            out.append((first, second[0], {k: v.tolist() for k, v in second[1].items()}))
    return out


def test_recreate_by_hand_is_idempotent(pair_samples):
    loader = PairsSimilarityDataLoader(pair_samples, batch_size=3)
    loader.set_salt("train")
    again = type(loader)(dataset=loader.dataset, batch_size=3, collate_fn=loader.collate_fn)
    twice = type(again)(dataset=again.dataset, batch_size=3, collate_fn=again.collate_fn)
    assert again.dataset is loader.dataset is twice.dataset
    expected = flatten(loader)
    assert expected[0][1] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert flatten(again) == expected == flatten(twice)
    assert again.original_params["collate_fn"] == PairsSimilarityDataLoader.pre_collate_fn
    # shared layers: a salt set on the re-created loader reaches the same ids
    twice.set_salt("val")
    assert next(iter(loader))[0][0] == reference_id(0, "val")


def test_recreate_keeps_train_collator_and_label_cache(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    loader.set_salt("train")
    loader.collate_fn = TrainCollator(
        loader.original_params["collate_fn"], {"e": collate_upper}, {"e": empty_meta}
    )
    loader.set_label_cache_mode(LabelCacheMode.learn)
    expected = flatten(loader)
    again = type(loader)(dataset=loader.dataset, batch_size=2, collate_fn=loader.collate_fn)
    assert again.collate_fn is loader.collate_fn
    assert again.original_params["collate_fn"] == GroupSimilarityDataLoader.pre_collate_fn
    assert again.full_cache_used
    again.set_skip_read(True)
    again.set_label_cache_mode(LabelCacheMode.read)
    served = flatten(again)
    assert [b[2] for b in served] == [b[2] for b in expected]
    assert expected[0][0] == {"e": ["X0", "X1"]} and served[0][0] == {"e": [None, None]}


def test_recreate_with_distributed_sampler_shards_the_shared_layers(group_samples):
    # what Lightning does under DDP: the same class, the same dataset, a DistributedSampler
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    loader.set_salt("train")
    sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=0, shuffle=False)
    shard = type(loader)(dataset=loader.dataset, batch_size=2, sampler=sampler)
    assert shard.dataset is loader.dataset
    ids = [i for batch in shard for i in batch[0]]
    assert ids == [reference_id(i, "train") for i in range(0, 7, 2)]  # rank 0 of 2


class _Echo(pl.LightningModule):
    """Predicts each batch unchanged, so ``trainer.predict`` shows what the loader served."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return batch


@pytest.mark.parametrize("kind", ["map", "iterable", "train collator"])
def test_trainer_predict_serves_what_the_loader_serves(kind, group_samples, pair_samples):
    # trainer.predict re-creates the loader through its constructor (sequential sampler)
    if kind == "iterable":
        loader = GroupSimilarityDataLoader(ShardedGroups(5), batch_size=2)
    elif kind == "map":
        loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    else:
        loader = PairsSimilarityDataLoader(pair_samples, batch_size=3)
    loader.set_salt("train")
    if kind == "train collator":
        loader.collate_fn = TrainCollator(
            loader.original_params["collate_fn"], {"e": collate_upper}, {"e": empty_meta}
        )
    expected = flatten(loader)
    assert flatten(trainer().predict(_Echo(), loader)) == expected
    assert flatten(trainer().predict(_Echo(), loader)) == expected  # and again, same loader


class _GroupsEcho(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        ids, features, labels = batch
        return ids, features, labels["groups"]


def test_trainer_predict_recreates_loader_without_double_wrapping(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=3)
    loader.set_salt("train")
    outputs = trainer().predict(_GroupsEcho(), loader)
    ids = [i for batch_ids, _, _ in outputs for i in batch_ids]
    assert ids == [reference_id(i, "train") for i in range(len(group_samples))]
    assert [f for _, features, _ in outputs for f in features] == [s.obj for s in group_samples]
    groups = torch.cat([g for _, _, g in outputs]).tolist()
    assert groups == [s.group for s in group_samples]
