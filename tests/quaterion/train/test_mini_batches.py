"""Cutting collated batches into mini-batches of records."""

import pytest
import torch

from quaterion.train.cache.host_rows import HostRows
from quaterion.train.mini_batches import batch_size_of, iter_mini_batches, slice_records


def test_nested_inputs_are_cut_by_record():
    features = {
        "data": {
            "text": {"input_ids": torch.arange(10).view(5, 2), "lengths": [3, 1, 4, 1, 5]},
            "rows": HostRows(torch.tensor([9, 8, 7, 6, 5])),
            "pair": (torch.arange(5), torch.arange(5) * 2),
            "scale": torch.tensor(2.0),
        },
        "meta": [{"i": i} for i in range(5)],
    }
    parts = list(iter_mini_batches(features, 2))
    assert [(start, stop) for start, stop, _ in parts] == [(0, 2), (2, 4), (4, 5)]
    _, _, middle = parts[1]
    assert middle["data"]["text"]["input_ids"].tolist() == [[4, 5], [6, 7]]
    assert middle["data"]["text"]["lengths"] == [4, 1]
    assert middle["data"]["rows"].rows.tolist() == [7, 6]
    assert [t.tolist() for t in middle["data"]["pair"]] == [[2, 3], [4, 6]]
    assert middle["data"]["scale"].item() == 2.0
    assert middle["meta"] == [{"i": 2}, {"i": 3}]


def test_switch_batches_keep_each_option_run_and_renumber():
    value = {
        "ordering": {"a": [0, 2, 3], "b": [1, 4]},
        "batches": {"a": torch.tensor([10, 12, 13]), "b": torch.tensor([11, 14])},
    }
    part = slice_records(value, 2, 4, 5, "encoder 'x'")
    assert part["ordering"] == {"a": [0, 1], "b": []}
    assert part["batches"]["a"].tolist() == [12, 13] and "b" not in part["batches"]


def test_a_tensor_without_the_batch_first_is_named():
    with pytest.raises(ValueError, match=r"encoder 'text'.*shape \(3, 5\).*batch size 5"):
        list(iter_mini_batches({"data": {"text": torch.zeros(3, 5)}, "meta": [{}] * 5}, 2))


def test_an_object_that_cannot_be_cut_is_named():
    with pytest.raises(ValueError, match="encoder 'x'.*object"):
        slice_records(object(), 0, 1, 2, "encoder 'x'")


def test_batch_size_without_meta_list_comes_from_a_tensor():
    assert batch_size_of({"data": {"a": torch.zeros(7, 2)}, "meta": None}) == 7
    with pytest.raises(ValueError, match="number of records"):
        batch_size_of({"data": {"a": [1, 2]}, "meta": None})


@pytest.mark.parametrize("size", [2, 3])
def test_a_tuple_of_batch_tensors_as_long_as_the_batch_is_cut_item_by_item(size):
    # a collate returning (ids, mask): with a last batch of 2 records the tuple has the
    # batch's length too, yet it is one structure of per-record tensors, not 2 records
    ids, mask = torch.arange(size * 3).view(size, 3), torch.ones(size, 3)
    parts = [
        slice_records(value, 0, 1, size, "encoder 'x'")
        for value in ((ids, mask, ids * 2)[:size], [ids, mask, ids * 2][:size])
    ]
    for part, kind in zip(parts, (tuple, list)):
        assert type(part) is kind and len(part) == size
        assert part[0].tolist() == ids[:1].tolist() and part[1].tolist() == mask[:1].tolist()


def test_a_list_of_records_as_long_as_the_batch_is_cut_by_record():
    records = [torch.arange(4), torch.arange(2), torch.arange(3)]  # variable length
    assert [t.tolist() for t in slice_records(records, 1, 3, 3, "encoder 'x'")] == [
        [0, 1],
        [0, 1, 2],
    ]
    assert slice_records(["a", "b", "c"], 0, 2, 3, "encoder 'x'") == ["a", "b"]


def test_a_named_tuple_keeps_its_type():
    from typing import NamedTuple

    class Tokens(NamedTuple):
        ids: torch.Tensor
        mask: torch.Tensor

    part = slice_records(Tokens(torch.arange(5), torch.arange(5) * 2), 1, 3, 5, "encoder 'x'")
    assert type(part) is Tokens
    assert part.ids.tolist() == [1, 2] and part.mask.tolist() == [2, 4]


def test_numpy_arrays_are_cut_like_tensors():
    import numpy as np

    features = {
        "data": {"x": np.arange(10).reshape(5, 2), "pair": (np.arange(5), np.ones(5))},
        "meta": [{}] * 5,
    }
    _, _, part = list(iter_mini_batches(features, 2))[1]
    assert part["data"]["x"].tolist() == [[4, 5], [6, 7]]
    assert [item.tolist() for item in part["data"]["pair"]] == [[2, 3], [1.0, 1.0]]
    assert slice_records(np.float32(2.5), 0, 1, 5, "encoder 'x'") == 2.5
    with pytest.raises(ValueError, match=r"encoder 'x'.*shape \(3,\).*batch size 5"):
        list(iter_mini_batches({"data": {"x": np.zeros(3)}, "meta": [{}] * 5}, 2))
