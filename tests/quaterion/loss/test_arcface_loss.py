"""ArcFaceLoss: spec value, a naive loop, pytorch-metric-learning's ArcFace, properties."""

import json
import math

import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss as PMLArcFaceLoss

from quaterion.loss.arcface_loss import ArcFaceLoss, arcface_loss
from tests.quaterion.loss._strategies import (
    with_kernel,
)

E = torch.tensor(
    [[0, -1, 0.5], [0.1, 2, 0.5], [0, 0.3, 0.2], [1, 0, 0.9], [1.2, -1.2, 0.01], [-0.7, 0, 1.5]]
)
G = torch.tensor([1, 2, 3, 3, 2, 1])
K = torch.tensor([[0.1, -0.2, 0.3, 0], [0.5, 0.1, -0.4, 0.2], [-0.3, 0.6, 0.2, 0.1]])


def _cosines(emb, kernel):
    rows, cols = emb.double().tolist(), kernel.double().T.tolist()
    out = []
    for e in rows:
        norm_e = max(math.sqrt(sum(v * v for v in e)), 1e-12)
        line = []
        for w in cols:
            norm_w = max(math.sqrt(sum(v * v for v in w)), 1e-12)
            line.append(sum(a * b for a, b in zip(e, w)) / (norm_e * norm_w))
        out.append(line)
    return out


def naive_arcface(emb, kernel, groups, scale, margin):
    losses = []
    for cos_row, y in zip(_cosines(emb, kernel), groups.tolist()):
        logits = [
            scale * (math.cos(math.acos(c) + margin) if j == y else c)
            for j, c in enumerate(cos_row)
        ]
        top = max(logits)
        log_norm = top + math.log(sum(math.exp(z - top) for z in logits))
        losses.append(log_norm - logits[y])
    return sum(losses) / len(losses)


def _with_kernel(kernel, **kwargs):
    return with_kernel(ArcFaceLoss, kernel, **kwargs)


def _near_class_batch(seed):
    """Rows close to their class column: every target angle stays below π − margin."""
    gen = torch.Generator().manual_seed(seed)
    kernel = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 5, (10,), generator=gen)
    emb = kernel.T[groups] + 0.5 * torch.randn(10, 6, generator=gen, dtype=torch.float64)
    return emb, kernel, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pml_below_threshold(seed):
    emb, kernel, groups = _near_class_batch(seed)
    margin, scale = 0.5, 64.0
    target_cos = torch.tensor(_cosines(emb, kernel)).gather(1, groups[:, None])
    assert (torch.arccos(target_cos) <= math.pi - margin).all()  # precondition of the test
    pml = PMLArcFaceLoss(num_classes=5, embedding_size=6, margin=math.degrees(margin), scale=scale)
    with torch.no_grad():
        pml.W.copy_(kernel)
    torch.testing.assert_close(arcface_loss(emb, kernel, groups, scale, margin), pml(emb, groups))


def test_no_threshold_correction_unlike_pml():
    """Past θ + m > π PML switches to cos θ − m·sin m; we keep cos(θ + m) (upstream)."""
    kernel = torch.eye(3, dtype=torch.float64)
    emb = torch.tensor([[-1.0, 0.05, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    groups = torch.tensor([0, 1])
    ours = arcface_loss(emb, kernel, groups, 64.0, 0.5)
    pml = PMLArcFaceLoss(num_classes=3, embedding_size=3, margin=math.degrees(0.5), scale=64.0)
    with torch.no_grad():
        pml.W.copy_(kernel)
    torch.testing.assert_close(
        ours, torch.tensor(naive_arcface(emb, kernel, groups, 64.0, 0.5), dtype=torch.float64)
    )
    assert not torch.isclose(ours, pml(emb, groups), rtol=1e-3)


def test_parameters_and_init():
    loss = ArcFaceLoss(64, 100)
    params = dict(loss.named_parameters())
    assert list(params) == ["kernel"] and params["kernel"].shape == (64, 100)
    assert abs(loss.kernel.std().item() - 0.01) < 0.001
    assert (loss.scale, loss.margin) == (64.0, 0.5)


def test_config_dict_json():
    config = ArcFaceLoss(3, 4, scale=30, margin=0.3).get_config_dict()
    assert json.loads(json.dumps(config)) == {
        "distance_metric_name": "cosine",
        "embedding_size": 3,
        "num_groups": 4,
        "scale": 30.0,
        "margin": 0.3,
    }
