from collections import UserDict, namedtuple

import pytest
import torch

from quaterion_models.utils import move_to_device

Pair = namedtuple("Pair", ["left", "right"])


def test_nested_containers_keep_types_and_move():
    obj = {
        "a": torch.ones(2),
        "b": [torch.zeros(1), "text", 3],
        "c": (torch.ones(1), None),
        "d": Pair(torch.ones(1), {"e": torch.zeros(2)}),
    }
    moved = move_to_device(obj, "meta")
    assert moved["a"].device.type == "meta"
    assert isinstance(moved["b"], list) and moved["b"][1:] == ["text", 3]
    assert moved["b"][0].device.type == "meta"
    assert type(moved["c"]) is tuple and moved["c"][1] is None
    assert type(moved["d"]) is Pair and moved["d"].right["e"].device.type == "meta"
    on_cpu = move_to_device([torch.arange(3)], torch.device("cpu"))
    assert on_cpu[0].device.type == "cpu" and on_cpu[0].tolist() == [0, 1, 2]


def test_bad_device_type():
    with pytest.raises(TypeError, match="device"):
        move_to_device(torch.ones(1), 0.5)


class Encoding(UserDict):
    """A mapping that moves itself, like a tokenizer's ``BatchEncoding``."""

    def to(self, device):
        return Encoding({key: value.to(device) for key, value in self.items()})


def test_mapping_with_to_moves_itself_and_plain_mapping_stays():
    moved = move_to_device({"tokens": Encoding(ids=torch.ones(2, dtype=torch.long))}, "meta")
    assert type(moved["tokens"]) is Encoding
    assert moved["tokens"]["ids"].device.type == "meta"
    plain = UserDict(ids=torch.ones(2))  # no `to`: returned unchanged, as the spec says
    assert move_to_device(plain, "meta") is plain
