"""SoftmaxLoss: spec value, a naive loop, properties, errors."""

import json
import math

import pytest
import torch

from quaterion.loss.softmax_loss import SoftmaxLoss, softmax_loss
from tests.quaterion.loss._strategies import (
    with_kernel,
)

E = torch.tensor(
    [[0, -1, 0.5], [0.1, 2, 0.5], [0, 0.3, 0.2], [1, 0, 0.9], [1.2, -1.2, 0.01], [-0.7, 0, 1.5]]
)
G = torch.tensor([1, 2, 3, 3, 2, 1])
K = torch.tensor([[0.1, -0.2, 0.3, 0], [0.5, 0.1, -0.4, 0.2], [-0.3, 0.6, 0.2, 0.1]])


def naive_softmax(emb, kernel, groups, temperature):
    rows, cols = emb.double().tolist(), kernel.double().T.tolist()
    losses = []
    for e, y in zip(rows, groups.tolist()):
        logits = [sum(a * b for a, b in zip(e, w)) / temperature for w in cols]
        top = max(logits)
        losses.append(top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y])
    return sum(losses) / len(losses)


def _with_kernel(kernel, **kwargs):
    return with_kernel(SoftmaxLoss, kernel, **kwargs)


@pytest.mark.parametrize("temperature", [0.05, 1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop(temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    kernel = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 5, (8,), generator=gen)
    expected = torch.tensor(naive_softmax(emb, kernel, groups, temperature), dtype=torch.float64)
    torch.testing.assert_close(_with_kernel(kernel, temperature=temperature)(emb, groups), expected)
    torch.testing.assert_close(softmax_loss(emb, kernel, groups, temperature), expected)


def test_parameters_and_config():
    loss = SoftmaxLoss(64, 100)
    assert [n for n, _ in loss.named_parameters()] == ["kernel"]
    assert loss.kernel.shape == (64, 100) and abs(loss.kernel.std().item() - 0.01) < 0.001
    assert json.loads(json.dumps(SoftmaxLoss(3, 4).get_config_dict())) == {
        "distance_metric_name": "cosine",
        "embedding_size": 3,
        "num_groups": 4,
        "temperature": 0.05,
    }
