"""A batch of another embedding width is refused at the update that brings it (not later,
by ``torch.cat`` inside ``evaluate``), and nothing of it is stored."""

import pytest
import torch

from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalReciprocalRank


def _group_batch(width: int) -> tuple:
    return torch.randn(4, width), torch.tensor([0, 0, 1, 1])


def _pair_batch(width: int) -> tuple:
    pairs = torch.tensor([[0, 1], [2, 3]])
    return torch.randn(4, width), torch.tensor([1.0, 0.0]), pairs, torch.zeros(4)


@pytest.mark.parametrize(
    "make, batch",
    [(RetrievalRPrecision, _group_batch), (RetrievalReciprocalRank, _pair_batch)],
    ids=["group", "pair"],
)
def test_an_update_of_another_width_is_refused_and_leaves_the_state_alone(make, batch):
    metric = make()
    first = batch(3)
    metric.update(*first)
    expected = metric.compute(**metric.accumulator.state)
    shapes = {name: value.shape for name, value in metric.accumulator.state.items()}
    for wrong in (batch(5), (first[0][:, :, None], *first[1:])):  # wider; not 2-D
        with pytest.raises(ValueError, match=r"embeddings of shape \(4, .*3 wide") as raised:
            metric.update(*wrong)
        assert "reset()" in str(raised.value)
        assert {name: value.shape for name, value in metric.accumulator.state.items()} == shapes
        torch.testing.assert_close(metric.evaluate(), expected)
    metric.update(*batch(3))  # the same width keeps working
    assert metric.accumulator.embeddings.shape == (8, 3)
    metric.reset()
    metric.update(*batch(5))  # a new evaluation may use another model
    assert metric.accumulator.embeddings.shape == (4, 5)
