"""SoftmaxLoss: spec value, a naive loop, properties, errors."""

import json
import math

import torch

from quaterion.loss.softmax_loss import SoftmaxLoss
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
