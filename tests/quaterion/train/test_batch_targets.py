"""Batch targets are checked on the host by the loss itself (``check_batch_targets``)."""

import pytest
import torch

from quaterion.loss import ArcFaceLoss, ContrastiveLoss, TripletLoss
from quaterion.loss.similarity_loss import SimilarityLoss
from quaterion.train.fit_checks import check_batch_labels


def _pairs_batch(labels):
    return {"data": None}, {"labels": torch.tensor(labels), "pairs": torch.tensor([[0, 1]])}


def test_pair_scores_outside_the_loss_range_are_refused_on_the_host():
    loss = ContrastiveLoss()
    check_batch_labels(loss, _pairs_batch([0.0, 1.0]))  # inside [0, 1]
    with pytest.raises(ValueError, match="ContrastiveLoss"):
        check_batch_labels(loss, _pairs_batch([0.0, 2.5]))


def test_class_ids_outside_num_groups_are_refused_on_the_host():
    loss = ArcFaceLoss(embedding_size=4, num_groups=3)
    check_batch_labels(loss, ({}, {"groups": torch.tensor([0, 2, 1])}))
    with pytest.raises(AssertionError, match="ArcFaceLoss"):
        check_batch_labels(loss, ({}, {"groups": torch.tensor([0, 3])}))
    TripletLoss().check_batch_targets({"groups": torch.tensor([0, 99])})  # no class ids


def test_a_loss_of_your_own_checks_its_targets():
    seen = []

    class Strict(SimilarityLoss):
        def check_batch_targets(self, targets):
            seen.append(targets)
            if (targets["groups"] < 0).any():
                raise ValueError("negative group")

    targets = {"groups": torch.tensor([1, 2])}
    check_batch_labels(Strict(), ({}, targets))
    assert seen == [targets]
    with pytest.raises(ValueError, match="negative group"):
        check_batch_labels(Strict(), ({}, {"groups": torch.tensor([-1])}))
