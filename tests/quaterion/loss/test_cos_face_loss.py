"""CosFaceLoss against pytorch-metric-learning (the shared checks: test_classifier_losses)."""

import pytest
import torch
from pytorch_metric_learning.losses import CosFaceLoss as PMLCosFaceLoss

from quaterion.loss.cos_face_loss import cos_face_loss


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
