"""Pair losses refuse, before the device transfer, pair indices outside the batch's rows."""

import pytest
import torch

from quaterion.loss import ContrastiveLoss, MultipleNegativesRankingLoss
from quaterion.train.fit_checks import check_batch_labels


def _targets(pairs):
    return {
        "pairs": torch.tensor(pairs, dtype=torch.long),
        "labels": torch.ones(len(pairs)),
        "subgroups": torch.zeros(4),
    }


@pytest.mark.parametrize("loss", [ContrastiveLoss(), MultipleNegativesRankingLoss()])
def test_in_range_pairs_pass(loss):
    check_batch_labels(loss, ({}, _targets([[0, 2], [1, 3]])))


@pytest.mark.parametrize("loss", [ContrastiveLoss(), MultipleNegativesRankingLoss()])
@pytest.mark.parametrize("bad,position", [([[0, 2], [-1, 3]], 1), ([[0, 4], [1, 3]], 0)])
def test_out_of_range_pair_is_named(loss, bad, position):
    # -1 would silently read the last row; 4 is past the 4 rows (a device assert on a GPU)
    with pytest.raises(ValueError, match=rf"pair {position} of the batch .* 4 embedding rows"):
        check_batch_labels(loss, ({}, _targets(bad)))
