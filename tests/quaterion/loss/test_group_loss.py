import pytest
import torch

from quaterion.loss import GroupLoss, SimilarityLoss


def test_forward_is_abstract():
    with pytest.raises(NotImplementedError):
        GroupLoss()(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))


def test_default_xbm_names_the_class():
    class MyLoss(GroupLoss):
        def forward(self, embeddings, groups):
            return embeddings.sum()

    loss = MyLoss("euclidean")
    assert isinstance(loss, SimilarityLoss)
    with pytest.raises(NotImplementedError, match="XBM is not implemented for MyLoss"):
        loss.xbm_loss(torch.zeros(2, 3), torch.zeros(2), torch.zeros(1, 3), torch.zeros(1))
