import pickle

import pytest
import torch

from quaterion.dataset import GroupSimilarityDataLoader, PairsSimilarityDataLoader
from quaterion.dataset.train_collator import TrainCollator


def length_collate(features):
    return torch.tensor([len(f) for f in features])


def first_letter_meta(features):
    return [{"first": f[0]} for f in features]


def upper_collate(features):
    return [f.upper() for f in features]


def length_meta(features):
    return [{"len": len(f), "first": "overridden"} for f in features]


def test_train_collator_batch_layout(pair_samples):
    loader = PairsSimilarityDataLoader(pair_samples, batch_size=3)
    loader.set_salt("train")
    raw = next(iter(loader))  # (ids, features, labels) from the pre-collate
    collator = TrainCollator(
        loader.original_params["collate_fn"],
        {"default": length_collate},
        {"default": first_letter_meta},
    )
    loader.collate_fn = collator
    features, labels = next(iter(loader))
    _, raw_features, raw_labels = raw
    assert raw_features == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert set(features) == {"data", "meta"}
    torch.testing.assert_close(features["data"]["default"], torch.tensor([2] * 6))
    assert features["meta"] == [{"first": f[0]} for f in raw_features]
    assert len(features["meta"]) == 6
    assert labels.keys() == raw_labels.keys()
    for key in labels:
        torch.testing.assert_close(labels[key], raw_labels[key])


def test_train_collator_two_encoders_merge_meta(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    collator = TrainCollator(
        loader.original_params["collate_fn"],
        {"len": length_collate, "up": upper_collate},
        {"len": first_letter_meta, "up": length_meta},
    )
    loader.collate_fn = collator
    features, labels = next(iter(loader))
    assert features["data"]["up"] == ["X0", "X1"]
    # later encoders win on clashing keys; one dict per record
    assert features["meta"] == [{"first": "overridden", "len": 2}] * 2
    torch.testing.assert_close(labels["groups"], torch.tensor([0, 1]))


class _KeyCollator(TrainCollator):
    def pre_encoder_collate(self, features, ids=None, encoder_name=None):
        return [f"{encoder_name}:{hash_id}" for hash_id in ids]


def test_pre_encoder_collate_hook_feeds_collate_and_meta(group_samples):
    loader = GroupSimilarityDataLoader(group_samples, batch_size=2)
    loader.set_salt("train")
    collator = _KeyCollator(
        loader.original_params["collate_fn"], {"enc": upper_collate}, {"enc": length_meta}
    )
    features, _ = collator([loader.dataset[0], loader.dataset[1]])
    expected = [f"ENC:{loader.dataset[i][0]}" for i in range(2)]
    assert features["data"]["enc"] == expected
    assert [m["len"] for m in features["meta"]] == [len(e) for e in expected]


def test_train_collator_pickles(pair_samples):
    loader = PairsSimilarityDataLoader(pair_samples, batch_size=2)
    collator = TrainCollator(
        loader.original_params["collate_fn"],
        {"default": length_collate},
        {"default": first_letter_meta},
    )
    copy = pickle.loads(pickle.dumps(collator))
    batch = [loader.dataset[0], loader.dataset[1]]
    (features, labels), (features2, labels2) = collator(batch), copy(batch)
    torch.testing.assert_close(features["data"]["default"], features2["data"]["default"])
    assert features["meta"] == features2["meta"]
    torch.testing.assert_close(labels["pairs"], labels2["pairs"])


def test_train_collator_validates_arguments():
    with pytest.raises(TypeError, match="pre_collate_fn must be callable"):
        TrainCollator(None, {}, {})
    with pytest.raises(ValueError, match=r"same encoders, got \['a', 'b'\] and \['a'\]"):
        TrainCollator(
            length_collate, {"a": length_collate, "b": length_collate}, {"a": length_meta}
        )
