"""CosFaceLoss: spec value (paper formula), a naive loop, pytorch-metric-learning, properties."""

import json
import math

import pytest
import torch
from pytorch_metric_learning.losses import CosFaceLoss as PMLCosFaceLoss

from quaterion.loss.cos_face_loss import CosFaceLoss, cos_face_loss
from tests.quaterion.loss._strategies import (
    with_kernel,
)

E = torch.tensor(
    [[0, -1, 0.5], [0.1, 2, 0.5], [0, 0.3, 0.2], [1, 0, 0.9], [1.2, -1.2, 0.01], [-0.7, 0, 1.5]]
)
G = torch.tensor([1, 2, 3, 3, 2, 1])
K = torch.tensor([[0.1, -0.2, 0.3, 0], [0.5, 0.1, -0.4, 0.2], [-0.3, 0.6, 0.2, 0.1]])


def naive_cos_face(emb, kernel, groups, margin, scale):
    rows, cols = emb.double().tolist(), kernel.double().T.tolist()
    losses = []
    for e, y in zip(rows, groups.tolist()):
        norm_e = math.sqrt(sum(v * v for v in e))
        logits = []
        for j, w in enumerate(cols):
            cos = sum(a * b for a, b in zip(e, w)) / (norm_e * math.sqrt(sum(v * v for v in w)))
            logits.append(scale * (cos - margin if j == y else cos))
        top = max(logits)
        losses.append(top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y])
    return sum(losses) / len(losses)


def _with_kernel(kernel, **kwargs):
    return with_kernel(CosFaceLoss, kernel, **kwargs)


def test_positional_order_is_margin_then_scale():
    loss = CosFaceLoss(3, 4, 0.2, 10.0)
    assert (loss.margin, loss.scale) == (0.2, 10.0)


@pytest.mark.parametrize("margin, scale", [(0.35, 64.0), (0.1, 8.0), (0.0, 1.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pml(margin, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    kernel = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 5, (8,), generator=gen)
    pml = PMLCosFaceLoss(num_classes=5, embedding_size=4, margin=margin, scale=scale)
    with torch.no_grad():
        pml.W.copy_(kernel)
    torch.testing.assert_close(cos_face_loss(emb, kernel, groups, margin, scale), pml(emb, groups))


def test_parameters_and_config():
    loss = CosFaceLoss(64, 100)
    assert [n for n, _ in loss.named_parameters()] == ["kernel"]
    assert loss.kernel.shape == (64, 100) and abs(loss.kernel.std().item() - 0.01) < 0.001
    assert json.loads(json.dumps(CosFaceLoss(3, 4).get_config_dict())) == {
        "distance_metric_name": "cosine",
        "embedding_size": 3,
        "num_groups": 4,
        "margin": 0.35,
        "scale": 64.0,
    }
