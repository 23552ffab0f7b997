import torch

from quaterion.eval.accumulators import GroupAccumulator


def test_update_concatenates_detaches_and_resets():
    acc = GroupAccumulator()
    assert acc.embeddings.numel() == 0 and acc.groups.numel() == 0
    first = torch.randn(2, 3, requires_grad=True)
    acc.update(first, torch.tensor([0, 1]))
    acc.update(torch.randn(1, 3), torch.tensor([1]), device="cpu")
    state = acc.state
    assert set(state) == {"embeddings", "groups"}
    assert state["groups"].tolist() == [0, 1, 1] and state["embeddings"].shape == (3, 3)
    assert (
        torch.equal(state["embeddings"][:2], first.detach())
        and not state["embeddings"].requires_grad
    )
    acc.set_filled()
    acc.reset()
    assert not acc.filled and acc.embeddings.numel() == 0 and acc.groups.numel() == 0
