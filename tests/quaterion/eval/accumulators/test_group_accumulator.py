import pytest
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


def test_reads_concatenate_once_and_keep_later_batches():
    """Reading joins the batches once: a second read is the same tensor (no new N x d
    copy), and a batch added after a read is joined on the next read."""
    acc = GroupAccumulator()
    batches = [torch.randn(4, 3) for _ in range(3)]
    for i, batch in enumerate(batches):
        acc.update(batch, torch.full((4,), i))
    first = acc.embeddings
    assert acc.embeddings is first and acc.state["embeddings"] is first
    assert acc.groups is acc.groups
    torch.testing.assert_close(first, torch.cat(batches), rtol=0, atol=0)
    extra = torch.randn(2, 3)
    acc.update(extra, torch.tensor([7, 7]))
    torch.testing.assert_close(acc.embeddings, torch.cat([*batches, extra]), rtol=0, atol=0)
    assert acc.groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [7, 7]


@pytest.mark.parametrize("groups, got", [(torch.tensor([0, 1]), "2 ids"), ([0, 1, 1], "list")])
def test_groups_must_hold_one_id_per_embedding(groups, got):
    acc = GroupAccumulator()
    with pytest.raises(ValueError, match=f"one id per embedding .3., got {got}"):
        acc.update(torch.randn(3, 2), groups)
    assert acc.embeddings.numel() == 0
