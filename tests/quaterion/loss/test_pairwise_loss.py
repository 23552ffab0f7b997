import pytest
import torch

from quaterion.distances import Distance
from quaterion.loss import PairwiseLoss, SimilarityLoss


def test_forward_is_abstract_and_keyword_names_match_trainer_call():
    loss = PairwiseLoss(Distance.DOT_PRODUCT)
    assert isinstance(loss, SimilarityLoss)
    with pytest.raises(NotImplementedError):
        loss(
            embeddings=torch.zeros(4, 3),
            pairs=torch.tensor([[0, 1], [2, 3]]),
            labels=torch.ones(2),
            subgroups=torch.zeros(4),
        )
