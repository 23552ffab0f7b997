import multiprocessing
import pickle

import numpy as np
import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.heads import EmptyHead, GatedHead, SequentialHead, WideningHead
from quaterion_models.model import DEFAULT_ENCODER_KEY, MetricModel
from tests.quaterion_models.toy_encoders import LambdaEncoder, LinearEncoder, StackEncoder


class LambdaHead(EmptyHead):
    def __init__(self, input_embedding_size: int):
        super().__init__(input_embedding_size)
        self.fn = lambda x: x


def test_single_encoder_and_alias():
    encoder = StackEncoder()
    model = SimilarityModel(encoders=encoder, head=EmptyHead(5))
    assert DEFAULT_ENCODER_KEY == "default"
    assert type(model.encoders) is dict and model.encoders == {"default": encoder}
    assert model.default is encoder and MetricModel is SimilarityModel


def test_state_dict_layout_and_freezing():
    frozen, free = LinearEncoder(is_trainable=False), LinearEncoder(is_trainable=True)
    model = SimilarityModel(encoders={"f": frozen, "t": free}, head=GatedHead(8))
    assert set(model.state_dict()) == {
        "f.linear.weight",
        "f.linear.bias",
        "t.linear.weight",
        "t.linear.bias",
        "head.gates",
    }
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in free.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_forward_concatenates_in_sorted_key_order():
    enc_b, enc_a = LinearEncoder(5, 2), LinearEncoder(5, 3)
    model = SimilarityModel(encoders={"b": enc_b, "a": enc_a}, head=EmptyHead(5))
    x = torch.rand(4, 5)
    out = model({"data": {"a": x, "b": x}, "meta": [{}] * 4})
    torch.testing.assert_close(out, torch.cat([enc_a(x), enc_b(x)], dim=1))


def test_forward_uses_the_encoders_dict_attribute():
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=EmptyHead(4))
    original = model.encoders["default"]
    model.encoders = {"default": StackEncoder(4)}  # what the training cache does
    x = torch.rand(2, 4)
    assert torch.equal(model({"data": {"default": x}, "meta": [{}, {}]}), x)
    assert model.default is original and "default.linear.weight" in model.state_dict()


@pytest.mark.parametrize("key", ["head", "encoders", "a.b", "", "../x", "forward", 3])
def test_bad_encoder_keys(key):
    with pytest.raises(ValueError, match="invalid encoder key"):
        SimilarityModel(encoders={key: StackEncoder()}, head=EmptyHead(5))


def test_bad_types():
    with pytest.raises(TypeError, match="head"):
        SimilarityModel(encoders=StackEncoder(), head=torch.nn.Linear(5, 5))
    with pytest.raises(TypeError, match="Encoder"):
        SimilarityModel(encoders={"x": torch.nn.Linear(5, 5)}, head=EmptyHead(5))


def test_head_none_is_tolerated_until_used(tmp_path):
    model = SimilarityModel(encoders=LinearEncoder(), head=None)
    assert model.head is None and "default.linear.weight" in model.state_dict()
    with pytest.raises(ValueError, match="no head"):
        model.encode([torch.rand(5)])
    with pytest.raises(ValueError, match="no head"):
        model.save(str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


def test_train_returns_self_and_output_size():
    model = SimilarityModel(encoders=StackEncoder(), head=EmptyHead(5))
    assert model.train() is model and model.training
    assert model.train(False) is model and not model.training
    assert SimilarityModel.get_encoders_output_size(StackEncoder(5)) == 5
    assert (
        SimilarityModel.get_encoders_output_size({"a": StackEncoder(5), "b": StackEncoder(3)}) == 8
    )


def _collate_in_worker(args):
    collate, records = args
    return collate(records)


def test_collate_fn_pickles_and_runs_in_pool_with_lambdas():
    model = SimilarityModel(
        encoders={"x": LambdaEncoder(5), "y": StackEncoder(5)}, head=LambdaHead(10)
    )
    collate = model.get_collate_fn()
    with pytest.raises(AttributeError, match="pickle"):
        pickle.dumps(model)  # the model itself is not picklable ...
    pickle.loads(pickle.dumps(collate))  # ... but its collate fn is
    records = [torch.rand(5) for _ in range(3)]
    # spawn: a worker forked from a process running torch's threads can deadlock on a lock
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        jobs = pool.map_async(_collate_in_worker, [(collate, records), (collate, records[:1])])
        results = jobs.get(timeout=120)
    assert results[0]["data"]["x"].shape == (3, 5)
    torch.testing.assert_close(results[0]["data"]["y"], torch.stack(records))
    assert results[0]["meta"] == [{}, {}, {}]
    assert results[1]["data"]["x"].shape == (1, 5)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 32])
def test_encode_matches_forward_for_any_batch_size(batch_size):
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=WideningHead(4))
    records = [torch.rand(5) for _ in range(7)]
    expected = model.eval()({"data": {"default": torch.stack(records)}, "meta": None})
    out = model.encode(records, batch_size=batch_size)
    assert isinstance(out, np.ndarray) and out.shape == (7, 4)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    tensor = model.encode(records, batch_size=batch_size, to_numpy=False)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (7, 4)


def test_encode_single_record_shapes_and_eval_mode():
    model = SimilarityModel(encoders=StackEncoder(), head=GatedHead(5)).train()
    single = model.encode(torch.rand(5))
    assert single.shape == (1, 5) and not model.training
    matrix = torch.rand(3, 5)  # one "record" that is a matrix: squeezed back to (3, D)
    out = model.encode(matrix, to_numpy=False)
    torch.testing.assert_close(out, matrix * torch.tanh(torch.tensor(2.0)))


def test_encode_empty_and_bfloat16():
    model = SimilarityModel(
        encoders=StackEncoder(), head=SequentialHead(torch.nn.Linear(5, 3), output_size=3)
    )
    assert model.encode([]).shape == (0, 3)
    assert model.encode([], to_numpy=False).shape == (0, 3)
    model = model.to(torch.bfloat16)
    records = [torch.rand(5, dtype=torch.bfloat16) for _ in range(2)]
    out = model.encode(records)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    assert model.encode(records, to_numpy=False).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(records, batch_size=0)
