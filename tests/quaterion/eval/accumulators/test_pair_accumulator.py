import pytest
import torch

from quaterion.eval.accumulators import PairAccumulator
from quaterion.eval.pair import RetrievalReciprocalRank


def test_pairs_are_shifted_and_evaluate_matches_compute():
    emb = torch.randn(8, 3)
    batch_pairs = torch.tensor([[0, 2], [1, 3]])
    metric = RetrievalReciprocalRank(reduce_func=None)
    for part in (emb[:4], emb[4:]):
        metric.update(part, torch.tensor([1.0, 0.5]), batch_pairs, torch.zeros(4))
    state = metric.accumulator.state
    assert state["pairs"].tolist() == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert state["subgroups"].shape == (8,) and state["labels"].tolist() == [1.0, 0.5, 1.0, 0.5]
    expected = metric.compute(emb, state["labels"], state["pairs"], torch.zeros(8))
    torch.testing.assert_close(metric.evaluate(), expected)


def test_empty_properties_and_reset():
    acc = PairAccumulator()
    assert (
        acc.embeddings.numel() == 0 and acc.pairs.dtype == torch.int64 and acc.labels.numel() == 0
    )
    acc.update(
        torch.randn(2, 3, requires_grad=True), torch.ones(1), torch.tensor([[0, 1]]), torch.zeros(2)
    )
    acc.set_filled()
    assert acc.filled and not acc.embeddings.requires_grad
    acc.reset()
    assert not acc.filled and acc.pairs.numel() == 0 and acc._accumulated_size == 0
    acc.update(torch.randn(2, 3), torch.ones(1), torch.tensor([[0, 1]]), torch.zeros(2))
    assert acc.pairs.tolist() == [[0, 1]]


def test_pair_reads_concatenate_once():
    acc = PairAccumulator()
    for _ in range(3):
        acc.update(torch.randn(4, 2), torch.ones(2), torch.tensor([[0, 1], [2, 3]]), torch.zeros(4))
    pairs = acc.pairs
    assert acc.pairs is pairs and acc.labels is acc.labels and acc.subgroups is acc.subgroups
    assert acc.embeddings is acc.embeddings
    # batch-local pairs shifted by the rows accumulated before them
    assert pairs.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]


@pytest.mark.parametrize("batch, bad_pair", [(0, [1, 5]), (1, [-1, 2])])
def test_pairs_leaving_their_batch_are_refused(batch, bad_pair):
    # after the shift, [1, 5] of batch 0 would pair object 1 with object 1 of batch 1, and
    # [-1, 2] of batch 1 the last object of batch 0 with object 2 of batch 1: both silently
    acc = PairAccumulator()
    emb = torch.randn(4, 3)
    for index in range(2):
        pairs = torch.tensor([[0, 3], bad_pair] if index == batch else [[0, 2], [1, 3]])
        acc.update(emb, torch.ones(2), pairs, torch.zeros(4))
    words = f"update batch {batch} .4 embeddings. has the pair \\{bad_pair}".replace("]", "\\]")
    with pytest.raises(ValueError, match=words):
        _ = acc.state
    acc.reset()
    acc.update(emb, torch.ones(2), torch.tensor([[0, 2], [1, 3]]), torch.zeros(4))
    assert acc.state["pairs"].tolist() == [[0, 2], [1, 3]]


def test_mismatched_labels_and_pairs_are_refused_at_update():
    acc = PairAccumulator()
    with pytest.raises(ValueError, match=r"pairs \(2, 2\) and 3 labels"):
        acc.update(torch.randn(4, 3), torch.ones(3), torch.tensor([[0, 2], [1, 3]]), torch.zeros(4))
    with pytest.raises(TypeError, match="as tensors"):
        acc.update(torch.randn(4, 3), [1.0, 1.0], torch.tensor([[0, 2], [1, 3]]), torch.zeros(4))
    assert acc.embeddings.numel() == 0  # nothing of a refused batch is stored
