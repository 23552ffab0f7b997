import pickle

import pytest
import torch
from torch.utils.data import default_collate

from quaterion_models.encoders import Encoder
from tests.quaterion_models.toy_encoders import LinearEncoder, NotPersistableEncoder


class Bare(Encoder):
    pass


def test_bare_subclass_instantiates_and_fails_only_on_use():
    encoder = Bare()
    for member in ("trainable", "embedding_size"):
        with pytest.raises(NotImplementedError, match=f"Bare.{member} is not implemented"):
            getattr(encoder, member)
    with pytest.raises(NotImplementedError, match="Bare.forward is not implemented"):
        encoder(torch.ones(1))


def test_save_load_not_implemented_name_class_and_fix(tmp_path):
    encoder = NotPersistableEncoder()
    with pytest.raises(NotImplementedError) as info:
        encoder.save(str(tmp_path))
    assert str(info.value) == (
        "NotPersistableEncoder.save is not implemented: "
        "implement save()/load() to persist this encoder"
    )
    with pytest.raises(
        NotImplementedError, match=r"NotPersistableEncoder\.load is not implemented"
    ):
        NotPersistableEncoder.load(str(tmp_path))


def test_defaults_collate_and_meta_are_picklable():
    encoder = LinearEncoder()
    collate = encoder.get_collate_fn()
    assert collate is default_collate
    batch = [torch.ones(5), torch.zeros(5)]
    assert collate(batch).shape == (2, 5)
    extractor = pickle.loads(pickle.dumps(encoder.get_meta_extractor()))
    assert extractor(["x", "y", "z"]) == [{}, {}, {}]
    assert LinearEncoder.extract_meta([1]) == [{}]


def test_disable_gradients_only_when_frozen():
    frozen, trainable = LinearEncoder(is_trainable=False), LinearEncoder(is_trainable=True)
    frozen.disable_gradients_if_required()
    trainable.disable_gradients_if_required()
    assert [p.requires_grad for p in frozen.parameters()] == [False, False]
    assert [p.requires_grad for p in trainable.parameters()] == [True, True]
