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


def test_loss_without_xbm_raises_even_on_an_empty_memory():
    # the first XBM step of a fit sees an empty memory: it must fail there already
    from quaterion.loss import OnlineContrastiveLoss, TripletLoss

    assert not OnlineContrastiveLoss.supports_xbm and TripletLoss.supports_xbm
    empty = (torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    with pytest.raises(NotImplementedError, match="OnlineContrastiveLoss"):
        OnlineContrastiveLoss().xbm_loss(
            torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), *empty
        )


def test_xbm_checks_the_memory_before_the_loss_sees_it():
    from quaterion.loss import TripletLoss

    batch = (torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(TypeError, match="groups"):
        TripletLoss().xbm_loss(*batch, torch.randn(5, 3), torch.rand(5))
    with pytest.raises(ValueError, match="groups"):
        TripletLoss().xbm_loss(*batch, torch.randn(5, 3), torch.zeros(4, dtype=torch.long))
