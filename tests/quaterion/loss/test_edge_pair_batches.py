"""Hostile batches for the pair losses: no pairs at all, scores that are not a tensor,
missing scores."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

import quaterion.loss as losses
from tests.quaterion.loss.conftest import E

PAIR_LOSSES = {
    "contrastive": lambda: losses.ContrastiveLoss(),
    "contrastive_sum": lambda: losses.ContrastiveLoss(size_average=False),
    "mnrl": lambda: losses.MultipleNegativesRankingLoss(),
    "mnrl_symmetric": lambda: losses.MultipleNegativesRankingLoss(symmetric=True),
}


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_a_batch_without_pairs_gives_an_attached_zero(name):
    embeddings = torch.zeros(0, 3, requires_grad=True)
    pairs = torch.zeros(0, 2, dtype=torch.long)
    loss = PAIR_LOSSES[name]()(embeddings, pairs, torch.zeros(0), torch.zeros(0))
    assert_close(loss, torch.zeros(()), rtol=0, atol=0)
    loss.backward()
    assert embeddings.grad is not None


@pytest.mark.parametrize("labels", [[1.0, 0.0, 1.0], np.array([1.0, 0.0, 1.0])])
def test_mnrl_refuses_scores_that_are_not_a_tensor(labels):
    # a list was never read, so a non-positive pair in it trained as a positive one
    pairs = torch.tensor([[0, 3], [1, 4], [2, 5]])
    with pytest.raises(TypeError, match="labels"):
        losses.MultipleNegativesRankingLoss()(E, pairs, labels, torch.zeros(6))


def test_contrastive_loss_names_missing_scores():
    pairs = torch.tensor([[0, 3], [1, 4], [2, 5]])
    with pytest.raises(TypeError, match="labels"):
        losses.ContrastiveLoss()(E, pairs, None, torch.zeros(6))
