"""ArcFaceLoss against pytorch-metric-learning's ArcFace (the shared checks: test_classifier_losses)."""

import math

import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss as PMLArcFaceLoss

from quaterion.loss.arcface_loss import arcface_loss
from tests.quaterion.loss._naive import cosines, naive_arcface


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
    target_cos = torch.tensor(cosines(emb, kernel)).gather(1, groups[:, None])
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
