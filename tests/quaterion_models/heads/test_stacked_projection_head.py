import pytest
import torch

from quaterion_models.heads import StackedProjectionHead
from quaterion_models.modules import ActivationFromFnName


def test_layers_keys_and_config():
    head = StackedProjectionHead(4, output_sizes=[8, 6, 2], activation_fn="gelu")
    assert head.output_size == 2
    assert set(head.state_dict()) == {
        f"_stack.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")
    }
    assert [type(m) for m in head._stack] == [
        torch.nn.Linear,
        ActivationFromFnName,
        torch.nn.Linear,
        ActivationFromFnName,
        torch.nn.Linear,
    ]
    assert head.get_config_dict() == {
        "input_embedding_size": 4,
        "dropout": 0.0,
        "output_sizes": [8, 6, 2],
        "activation_fn": "gelu",
    }


def test_transform_matches_manual_layers():
    head = StackedProjectionHead(3, output_sizes=[5, 2], activation_fn="tanh")
    x = torch.rand(4, 3)
    first, last = head._stack[0], head._stack[2]
    expected = torch.tanh(x @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(head(x), expected)


def test_single_layer_has_no_activation_and_round_trip(tmp_path):
    head = StackedProjectionHead(3, output_sizes=[2])
    assert len(head._stack) == 1
    x = -torch.rand(4, 3) * 10
    torch.testing.assert_close(head(x), x @ head._stack[0].weight.T + head._stack[0].bias)
    head.save(str(tmp_path))
    torch.testing.assert_close(StackedProjectionHead.load(str(tmp_path))(x), head(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="output_sizes"):
        StackedProjectionHead(3, output_sizes=[])
    with pytest.raises(ValueError, match="not_an_activation"):
        StackedProjectionHead(3, output_sizes=[2, 2], activation_fn="not_an_activation")
