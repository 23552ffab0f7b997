"""Pair scores of device tensors in a direct ``ContrastiveLoss`` / ``MultipleNegativesRankingLoss``
call: checked on the device without a host sync, a bad call's loss zeroed (zero, not NaN,
gradient) and its error raised two calls later, naming the first bad pair and its score.

No GPU runs here: the device path is forced for CPU tensors (``device_check_needed``
patched in each loss's module), which exercises everything but the pinned copy and the
CUDA event."""

import math

import pytest
import torch

from quaterion.loss import ContrastiveLoss, MultipleNegativesRankingLoss
from quaterion.loss import contrastive_loss as contrastive_module
from quaterion.loss import multiple_negatives_ranking_loss as mnrl_module
from quaterion.loss.multiple_negatives_ranking_loss import NonPositivePairsError
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.loss.conftest import E, PAIRS

SUBGROUPS = torch.tensor([0, 1, 0, 1, 0, 1])
# (loss class, its module, valid scores, bad scores, error type, first bad pair, its score)
CASES = [
    (
        ContrastiveLoss,
        contrastive_module,
        torch.tensor([1.0, 0.0, 0.5]),
        torch.tensor([1.0, math.nan, 2.0]),
        ValueError,
        1,
        "nan",
    ),
    (
        MultipleNegativesRankingLoss,
        mnrl_module,
        torch.ones(3),
        torch.tensor([1.0, 1.0, 0.0]),
        NonPositivePairsError,
        2,
        "0.0",
    ),
]


@pytest.fixture(params=CASES, ids=["contrastive", "mnrl"])
def case(request, monkeypatch):
    cls, module, *rest = request.param
    monkeypatch.setattr(module, "device_check_needed", lambda value: value is not None)
    return (cls, *rest)


def value_and_grad(loss_fn, labels):
    embeddings = E.clone().requires_grad_()
    value = loss_fn(embeddings, PAIRS, labels, SUBGROUPS)
    value.backward()
    return value.detach(), embeddings.grad


def test_bad_scores_raise_two_calls_later_with_the_bad_call_zeroed(case):
    cls, good, bad, error, position, score = case
    expected, expected_grad = value_and_grad(cls(), good)  # the CPU path (not patched)
    assert expected.abs() > 0 and expected_grad.abs().sum() > 0
    loss_fn = cls()
    value, grad = value_and_grad(loss_fn, good)  # call 1: valid scores, the same result
    torch.testing.assert_close(value, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    with count_host_syncs() as syncs:  # call 2: bad scores, nothing read on the host
        value, grad = value_and_grad(loss_fn, bad)
    assert syncs.total == 0, syncs.by_op
    torch.testing.assert_close(value, torch.zeros(()), rtol=0, atol=0)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=0)
    torch.testing.assert_close(loss_fn(E, PAIRS, good, SUBGROUPS), expected)  # call 3
    with pytest.raises(error) as raised:  # call 4 reads call 2's verdict
        loss_fn(E, PAIRS, good, SUBGROUPS)
    message = str(raised.value)
    assert f"pair {position} of the batch of loss call 2 " in message, message
    assert f"has score {score}" in message, message
    for _ in range(3):  # each bad call raises once; then the loss works again
        torch.testing.assert_close(loss_fn(E, PAIRS, good, SUBGROUPS), expected)


def test_a_bad_last_call_raises_at_the_next_mode_switch(case):
    cls, good, bad, error, _, _ = case
    loss_fn = cls()
    loss_fn(E, PAIRS, good, SUBGROUPS)
    loss_fn(E, PAIRS, bad, SUBGROUPS)  # the last call of an epoch: no later call reads it
    with pytest.raises(error, match="loss call 2"):
        loss_fn.eval()
    loss_fn.eval()  # read once
    assert not loss_fn.training


@pytest.mark.parametrize("cls, bad", [(c[0], c[3]) for c in CASES])
def test_cpu_scores_still_raise_at_once(cls, bad):
    with pytest.raises(ValueError, match="pair"):
        cls()(E, PAIRS, bad, SUBGROUPS)
