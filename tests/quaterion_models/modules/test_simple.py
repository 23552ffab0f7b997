import pytest
import torch

from quaterion_models.modules import ActivationFromFnName


@pytest.mark.parametrize("name", ["relu", "gelu", "tanh", "sigmoid"])
def test_matches_functional(name):
    x = torch.randn(4, 3)
    torch.testing.assert_close(ActivationFromFnName(name)(x), getattr(torch.nn.functional, name)(x))
    assert list(ActivationFromFnName(name).parameters()) == []


def test_unknown_name():
    with pytest.raises(ValueError, match="'nope'"):
        ActivationFromFnName("nope")
