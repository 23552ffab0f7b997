"""CenterLoss: spec value, a naive loop, properties, errors."""

import json
import math

import torch

from quaterion.loss.center_loss import CenterLoss

E = torch.tensor(
    [[0, -1, 0.5], [0.1, 2, 0.5], [0, 0.3, 0.2], [1, 0, 0.9], [1.2, -1.2, 0.01], [-0.7, 0, 1.5]]
)
G = torch.tensor([1, 2, 3, 3, 2, 1])
K = torch.tensor([[0.1, -0.2, 0.3, 0], [0.5, 0.1, -0.4, 0.2], [-0.3, 0.6, 0.2, 0.1]])


def naive_center(emb, centers, groups, lambda_c):
    total, count = 0.0, 0
    for e, y in zip(emb.double().tolist(), groups.tolist()):
        norm = max(math.sqrt(sum(v * v for v in e)), 1e-12)
        for k, v in enumerate(e):
            total += (v / norm - centers[y][k].item()) ** 2
            count += 1
    return lambda_c * total / count


def _with_centers(centers, **kwargs):
    loss = CenterLoss(centers.shape[1], centers.shape[0], **kwargs).to(centers.dtype)
    with torch.no_grad():
        loss.centers.copy_(centers)
    return loss


def test_parameters_and_config():
    loss = CenterLoss(64, 100)
    assert [n for n, _ in loss.named_parameters()] == ["centers"]
    assert loss.centers.shape == (100, 64) and loss.num_groups == 100
    bound = math.sqrt(6 / (64 + 100))  # xavier-uniform, gain 1
    assert loss.centers.abs().max() <= bound and loss.centers.abs().max() > 0.9 * bound
    assert json.loads(json.dumps(CenterLoss(3, 4).get_config_dict())) == {
        "distance_metric_name": "cosine",
        "embedding_size": 3,
        "num_groups": 4,
        "lambda_c": 0.5,
    }
