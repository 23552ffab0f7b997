import torch

from quaterion_models.heads import WideningHead


def test_layers_and_shapes():
    head = WideningHead(4)
    state = head.state_dict()
    assert set(state) == {"_stack.0.weight", "_stack.0.bias", "_stack.2.weight", "_stack.2.bias"}
    assert state["_stack.0.weight"].shape == (16, 4)
    assert state["_stack.2.weight"].shape == (4, 16)
    assert head.output_size == 4
    x = torch.rand(3, 4)
    first, last = head._stack[0], head._stack[2]
    expected = torch.relu(x @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(head(x), expected)


def test_config_round_trips_through_constructor(tmp_path):
    config = WideningHead(4).get_config_dict()
    assert config == {
        "input_embedding_size": 4,
        "dropout": 0.0,
        "output_sizes": [16, 4],
        "activation_fn": "relu",
        "expansion_factor": 4.0,
    }
    rebuilt = WideningHead(**config)
    assert rebuilt._stack[0].out_features == 16
    head = WideningHead(6, expansion_factor=1.5, activation_fn="gelu", dropout=0.1)
    assert head._stack[0].out_features == 9
    head.save(str(tmp_path))
    loaded = WideningHead.load(str(tmp_path)).eval()
    x = torch.rand(2, 6)
    torch.testing.assert_close(loaded(x), head.eval()(x))
    assert loaded.get_config_dict() == head.get_config_dict()
