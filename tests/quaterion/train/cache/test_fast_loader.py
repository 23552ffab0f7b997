"""The tensor-backed full-cache loader yields the loader's own batches."""

import pytest
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device

from quaterion.train.cache import CacheConfig, CacheEncoder
from quaterion.train.cache._fast_loader import TensorFreeMeta, _index_tensor, full_cache_loader
from tests.quaterion.train.helpers import Model, group_loader, pair_loader, trainer


def _cached(pairs: bool):
    model = Model(cache_config=CacheConfig(batch_size=5), pairs=pairs)
    loader = pair_loader(shuffle=True, batch_size=3) if pairs else group_loader(shuffle=True)
    model.setup_dataloader(loader)
    assert model.setup_cache(trainer(), loader, None) is True
    encoders = {k: e for k, e in model.model.encoders.items() if isinstance(e, CacheEncoder)}
    return model, loader, full_cache_loader(loader, encoders)


@pytest.mark.parametrize("pairs", [False, True])
def test_batches_equal_the_loaders_own(pairs):
    model, loader, fast = _cached(pairs)
    assert fast is not None
    torch.manual_seed(7)
    expected = list(loader)
    torch.manual_seed(7)
    got = list(fast)
    assert len(got) == len(expected) > 1
    for (features, targets), (ref_features, ref_targets) in zip(got, expected):
        assert isinstance(features["meta"], TensorFreeMeta)
        assert list(features["meta"]) == list(ref_features["meta"])
        assert targets.keys() == ref_targets.keys()
        for name, value in ref_targets.items():
            assert torch.equal(targets[name], value), name
        with torch.no_grad():
            torch.testing.assert_close(model.model(features), model.model(ref_features))


def test_index_tensor_from_list_and_tensor():
    assert torch.equal(_index_tensor([3, 0, 2]), torch.tensor([3, 0, 2]))
    assert _index_tensor([3, 0, 2]).dtype == torch.long
    got = _index_tensor(torch.tensor([1, 4], dtype=torch.int32))
    assert got.dtype == torch.long and got.tolist() == [1, 4]


def test_transfer_of_a_full_cache_batch_matches_lightnings_generic_move():
    model, _, fast = _cached(False)
    batch = next(iter(fast))
    device = torch.device("cpu")
    moved = model.transfer_batch_to_device(batch, device, 0)
    reference = move_data_to_device(({**batch[0], "meta": None}, batch[1]), device)
    assert moved[0]["meta"] is batch[0]["meta"]  # meta rows are not walked or copied
    assert moved[0]["data"].keys() == reference[0]["data"].keys()
    for name, value in reference[0]["data"].items():
        assert torch.equal(moved[0]["data"][name], value)
    assert all(torch.equal(moved[1][k], v) for k, v in reference[1].items())


def test_transfer_of_a_nested_batch_falls_back_to_lightning():
    model = Model()
    meta = TensorFreeMeta([{}, {}])
    batch = ({"data": {"default": [torch.ones(2)]}, "meta": meta}, {"groups": torch.ones(2)})
    moved = model.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert moved[0]["meta"] is meta
    assert isinstance(moved[0]["data"]["default"], list)
    assert torch.equal(moved[0]["data"]["default"][0], torch.ones(2))
