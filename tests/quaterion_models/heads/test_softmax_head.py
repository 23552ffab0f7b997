import torch

from quaterion_models.heads import SoftmaxEmbeddingsHead


def make_head():
    return SoftmaxEmbeddingsHead(output_groups=2, output_size_per_group=10, input_embedding_size=5)


def test_shape_keys_and_config():
    head = make_head()
    assert head.output_size == 20
    assert head(torch.rand(3, 5)).shape == (3, 20)
    assert set(head.state_dict()) == {"projection_layer.weight", "projection_layer.bias"}
    assert head.projection_layer.weight.shape == (20, 5)
    bound = 1 / 5**0.5  # torch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert head.projection_layer.weight.abs().max() <= bound
    assert head.projection_layer.weight.std() > bound / 4
    assert head.get_config_dict() == {
        "input_embedding_size": 5,
        "dropout": 0.0,
        "output_groups": 2,
        "output_size_per_group": 10,
    }


def test_groupwise_softmax_matches_manual_formula():
    head = make_head()
    x = torch.rand(4, 5)
    projected = x @ head.projection_layer.weight.T + head.projection_layer.bias
    expected = torch.empty_like(projected)
    for group in range(2):
        block = projected[:, group * 10 : (group + 1) * 10]
        expected[:, group * 10 : (group + 1) * 10] = block.exp() / block.exp().sum(1, keepdim=True)
    out = head(x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.view(4, 2, 10).sum(-1), torch.ones(4, 2))


def test_leading_dims_and_round_trip(tmp_path):
    head = make_head()
    x = torch.rand(2, 3, 5)
    assert head(x).shape == (2, 3, 20)
    torch.testing.assert_close(head(x)[1], head(x[1]))
    head.save(str(tmp_path))
    torch.testing.assert_close(SoftmaxEmbeddingsHead.load(str(tmp_path))(x), head(x))
