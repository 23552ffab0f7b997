import pickle

import pytest
import torch

from quaterion.dataset import GroupSimilarityDataLoader, SimilarityGroupSample
from quaterion.train.cache.cache_encoder import CacheMode
from quaterion.train.cache.cache_train_collator import CacheTrainCollator


def _collator(mode, key_extractors=None):
    return CacheTrainCollator(
        pre_collate_fn=GroupSimilarityDataLoader.pre_collate_fn,
        encoder_collates={"cached": lambda x: x, "plain": lambda x: ("plain", x)},
        meta_extractors={
            "cached": lambda x: [{"c": 1}] * len(x if isinstance(x, list) else x[0]),
            "plain": lambda x: [{"p": 2}] * len(x),
        },
        key_extractors=key_extractors or {},
        cachable_encoders=["cached"],
        mode=mode,
    )


def _batch(objs, ids):
    return [(i, SimilarityGroupSample(obj=o, group=0)) for i, o in zip(ids, objs)]


def test_fill_mode_hands_each_key_once():
    collator = _collator(CacheMode.FILL)
    features, labels = collator(_batch(["a", "b", "c"], [1, 2, 3]))
    assert features["data"] == {"cached": ([1, 2, 3], ["a", "b", "c"])}
    assert features["meta"] == {"cached": [{"c": 1}] * 3}
    features, _ = collator(_batch(["b", "d", "d"], [2, 4, 4]))
    assert features["data"]["cached"] == ([4], ["d"])
    assert labels["groups"].tolist() == [0, 0, 0]


def test_train_mode_gives_keys_and_plain_objects():
    collator = _collator(CacheMode.TRAIN)
    features, _ = collator(_batch(["a", "b"], [7, 8]))
    assert features["data"] == {"cached": [7, 8], "plain": ("plain", ["a", "b"])}
    assert features["meta"] == [{"c": 1, "p": 2}, {"c": 1, "p": 2}]


def test_custom_keys_and_unhashable_keys():
    collator = _collator(CacheMode.TRAIN, {"cached": str.upper})
    assert collator.pre_encoder_collate(["a", "b"], [1, 2], "cached") == ["A", "B"]
    bad = _collator(CacheMode.FILL, {"cached": lambda obj: [obj]})
    with pytest.raises(TypeError, match="'cached'.*unhashable.*list"):
        bad.pre_encoder_collate(["a"], [1], "cached")


def test_unknown_mode():
    collator = _collator(CacheMode.TRAIN)
    collator.mode = "other"
    with pytest.raises(NotImplementedError, match="Cache mode other is not implemented"):
        collator.pre_encoder_collate(["a"], [1], "cached")
    with pytest.raises(NotImplementedError):
        collator.process_meta({})


def test_picklable_with_module_level_callables():
    collator = CacheTrainCollator(
        GroupSimilarityDataLoader.pre_collate_fn,
        {"c": torch.stack},
        {"c": list},
        {},
        ["c"],
        CacheMode.TRAIN,
    )
    clone = pickle.loads(pickle.dumps(collator))
    assert clone.cachable_encoders == ["c"] and clone.mode is CacheMode.TRAIN


class Plain:
    """An object without its own ``__hash__``: hashed by identity."""


@pytest.mark.parametrize("key", [torch.tensor([1.0, 2.0]), Plain()], ids=["tensor", "object"])
def test_keys_hashed_by_identity_are_refused(key):
    """A tensor (or any object hashed by its address) is another key in another process, in
    a loader worker and after a reload: the cache must say so, not miss later."""
    bad = _collator(CacheMode.FILL, {"cached": lambda obj: key})
    with pytest.raises(TypeError, match="'cached'.*hashed by identity.*tuple"):
        bad.pre_encoder_collate(["a"], [1], "cached")
