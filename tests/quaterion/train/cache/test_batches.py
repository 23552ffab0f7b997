"""Batches served from the store equal the loader's own cached batches."""

import pytest
import torch

from quaterion.train.cache import CacheConfig
from quaterion.dataset.similarity_data_loader import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
)
from quaterion.train.cache._batches import RowMeta
from quaterion.train.cache.setup import batches_from_store
from tests.quaterion.train.helpers import (
    CountingEncoder,
    Model,
    group_loader,
    group_samples,
    pair_loader,
    pair_samples,
    trainer,
)


class MetaEncoder(CountingEncoder):
    """Meta record per object: its first coordinate, rounded."""

    def get_meta_extractor(self):
        return lambda batch: [{"x": round(float(obj[0]), 3)} for obj in batch]


@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("meta", [False, True])
def test_store_batches_equal_the_loaders_own(pairs, meta):
    encoder = MetaEncoder() if meta else CountingEncoder()
    model = Model(
        encoders={"default": encoder}, cache_config=CacheConfig(batch_size=5), pairs=pairs
    )
    loader = pair_loader(shuffle=True, batch_size=3) if pairs else group_loader(shuffle=True)
    model.setup_dataloader(loader)
    fit = model.cache_loaders(trainer(), loader, None)
    assert fit.cached is True and fit.served is True and loader.full_cache_used
    served = fit.train
    assert served is not loader
    torch.manual_seed(7)
    expected = list(loader)  # keys from the collator, labels from the data
    torch.manual_seed(7)
    reads_before = encoder.calls
    got = list(served)
    assert len(got) == len(expected) > 1 and encoder.calls == reads_before
    for (features, targets), (ref_features, ref_targets) in zip(got, expected):
        assert isinstance(features["meta"], RowMeta)
        assert list(features["meta"]) == list(ref_features["meta"])
        assert any(features["meta"]) == meta
        assert targets.keys() == ref_targets.keys()
        for name, value in ref_targets.items():
            assert torch.equal(targets[name], value), name
        with torch.no_grad():
            assert torch.equal(model.model(features), model.model(ref_features))


class _PlainSubclass(GroupSimilarityDataLoader):
    """A user's loader that keeps the group layout."""


class _OwnLabels(GroupSimilarityDataLoader):
    """A user's loader with labels of its own: the store cannot rebuild them."""

    @classmethod
    def collate_labels(cls, batch):
        return {"groups": torch.tensor([s.group * 10 for s in batch])}


@pytest.mark.parametrize(
    "make, served",
    [
        (lambda: group_loader(), True),
        (lambda: pair_loader(), True),
        (lambda: _PlainSubclass(group_samples()), True),
        (lambda: _OwnLabels(group_samples()), False),
        (lambda: group_loader(collate_fn=GroupSimilarityDataLoader.pre_collate_fn), True),
        (
            lambda: group_loader(collate_fn=lambda b: GroupSimilarityDataLoader.pre_collate_fn(b)),
            False,
        ),
    ],
)
def test_only_loaders_keeping_their_class_layout_are_served_from_the_store(make, served):
    assert batches_from_store(make()) is served


@pytest.mark.parametrize("layout", [GroupSimilarityDataLoader, PairsSimilarityDataLoader])
def test_labels_from_columns_inverts_label_columns_of_the_loaders_collate(layout):
    samples = pair_samples(5) if layout is PairsSimilarityDataLoader else group_samples(7)
    _, _, labels = layout.pre_collate_fn(list(enumerate(samples)))
    rebuilt = layout.labels_from_columns(layout.label_columns(labels))
    assert rebuilt.keys() == labels.keys()
    for key, value in labels.items():
        torch.testing.assert_close(rebuilt[key], value)
