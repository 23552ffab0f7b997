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


@pytest.mark.parametrize("name", ["dropout", "dropout1d"])
def test_dropout_named_as_activation_is_off_in_eval_mode(name):
    x = torch.rand(4, 6, 3) + 1.0  # dropout1d takes (N, C, L)
    layer = ActivationFromFnName(name)
    torch.testing.assert_close(layer.eval()(x), x)  # F.dropout defaults to training=True
    torch.manual_seed(0)
    dropped = layer.train()(x)
    torch.manual_seed(0)
    torch.testing.assert_close(dropped, getattr(torch.nn.functional, name)(x))  # as upstream


def test_random_functions_are_refused():
    with pytest.raises(ValueError, match="gumbel_softmax.*random"):
        ActivationFromFnName("gumbel_softmax")
