"""One table of bad inputs for quaterion_models: each row asserts the exception type and the
key words of its message. Valid edge inputs close to each boundary are checked to work."""

import math

import pytest
import torch
from torch import nn

from quaterion_models.encoders import SwitchEncoder
from quaterion_models.heads import (
    EmptyHead,
    GatedHead,
    SequentialHead,
    SkipConnectionHead,
    SoftmaxEmbeddingsHead,
    StackedProjectionHead,
    SwitchHead,
    WideningHead,
)

# (id, callable, exception type, words that must all appear in the message)
CONSTRUCTION = [
    (
        "negative-dropout",
        lambda: GatedHead(4, dropout=-0.1),
        ValueError,
        ["dropout", "-0.1", "[0, 1)"],
    ),
    ("dropout-one", lambda: EmptyHead(4, dropout=1.0), ValueError, ["dropout", "1.0", "[0, 1)"]),
    ("dropout-nan", lambda: EmptyHead(4, dropout=math.nan), ValueError, ["dropout", "nan"]),
    ("dropout-str", lambda: EmptyHead(4, dropout="0.1"), TypeError, ["dropout", "str", "0.1"]),
    (
        "skip-dropout",
        lambda: SkipConnectionHead(4, skip_dropout=1.5),
        ValueError,
        ["skip_dropout", "1.5"],
    ),
    (
        "skip-zero-layers",
        lambda: SkipConnectionHead(4, n_layers=0),
        ValueError,
        ["n_layers", "0", "EmptyHead"],
    ),
    (
        "zero-width",
        lambda: EmptyHead(0),
        ValueError,
        ["input_embedding_size", "0", "get_encoders_output_size"],
    ),
    ("float-width", lambda: GatedHead(4.5), TypeError, ["input_embedding_size", "float", "4.5"]),
    ("bool-width", lambda: GatedHead(True), TypeError, ["input_embedding_size", "bool"]),
    (
        "softmax-zero-groups",
        lambda: SoftmaxEmbeddingsHead(
            output_groups=0, output_size_per_group=3, input_embedding_size=4
        ),
        ValueError,
        ["SoftmaxEmbeddingsHead", "output_groups", "0", "at least one"],
    ),
    (
        "softmax-negative-group-size",
        lambda: SoftmaxEmbeddingsHead(
            output_groups=2, output_size_per_group=-3, input_embedding_size=4
        ),
        ValueError,
        ["output_size_per_group", "-3"],
    ),
    (
        "stacked-empty",
        lambda: StackedProjectionHead(4, output_sizes=[]),
        ValueError,
        ["output_sizes", "at least one"],
    ),
    (
        "stacked-zero-layer",
        lambda: StackedProjectionHead(4, output_sizes=[8, 0]),
        ValueError,
        ["output_sizes[1]", "0"],
    ),
    (
        "stacked-int-sizes",
        lambda: StackedProjectionHead(4, output_sizes=8),
        TypeError,
        ["output_sizes", "list"],
    ),
    (
        "stacked-bad-activation",
        lambda: StackedProjectionHead(4, [8, 2], activation_fn="relux"),
        ValueError,
        ["activation_fn", "relux"],
    ),
    (
        "widening-negative-factor",
        lambda: WideningHead(4, expansion_factor=-1.0),
        ValueError,
        ["expansion_factor", "-1.0"],
    ),
    (
        "widening-empty-hidden",
        lambda: WideningHead(4, expansion_factor=0.1),
        ValueError,
        ["expansion_factor", "at least one unit"],
    ),
    (
        "sequential-zero-output",
        lambda: SequentialHead(nn.Linear(4, 2), output_size=0),
        ValueError,
        ["output_size", "0"],
    ),
    (
        "sequential-non-module",
        lambda: SequentialHead(torch.relu, output_size=2),
        TypeError,
        ["Module"],
    ),
    (
        "switch-head-empty",
        lambda: SwitchHead({}, input_embedding_size=4),
        ValueError,
        ["options", "non-empty"],
    ),
    (
        "switch-head-not-a-head",
        lambda: SwitchHead({"a": nn.Linear(4, 4)}, 4),
        TypeError,
        ["'a'", "EncoderHead", "Linear"],
    ),
    ("switch-encoder-empty", lambda: SwitchEncoder({}), ValueError, ["options", "non-empty"]),
    (
        "switch-encoder-not-encoder",
        lambda: SwitchEncoder({"a": nn.Linear(2, 2)}),
        TypeError,
        ["'a'", "Encoder", "Linear"],
    ),
]


@pytest.mark.parametrize(
    "build, error, words", [pytest.param(*row[1:], id=row[0]) for row in CONSTRUCTION]
)
def test_bad_construction_arguments(build, error, words):
    with pytest.raises(error) as info:
        build()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_boundary_head_arguments_are_valid():
    """Values at the edge of each range still build heads that compute the right thing."""
    x = torch.rand(1, 4)  # a batch of one
    head = GatedHead(4, dropout=0.0)
    torch.testing.assert_close(head(x), x * math.tanh(2.0))
    assert isinstance(EmptyHead(1, dropout=0.999).dropout, nn.Dropout)
    softmax = SoftmaxEmbeddingsHead(
        output_groups=1, output_size_per_group=1, input_embedding_size=4
    )
    assert torch.equal(softmax(x), torch.ones(1, 1))  # one group of one: softmax is 1
    widening = WideningHead(4, expansion_factor=0.25)  # hidden width exactly 1
    assert widening(x).shape == (1, 4) and widening.get_config_dict()["output_sizes"] == [1, 4]
    skip = SkipConnectionHead(4, n_layers=1, skip_dropout=0.0)
    expected = skip.fc_0(x) * torch.sigmoid(torch.tensor(-4.0)) + x
    torch.testing.assert_close(skip(x), expected)
