"""Class ids of device tensors in a direct loss call: checked on the device without a host
sync, a bad call's loss zeroed (no gradient, nothing indexed out of bounds) and its
``AssertionError`` raised two calls later.

No GPU runs here: the device path is forced for CPU tensors (``device_check_needed``
patched), which exercises everything but the pinned copy and the CUDA event."""

import pytest
import torch

from quaterion.loss import ArcFaceLoss, CenterLoss, CosFaceLoss, SoftmaxLoss
from quaterion.loss import _classifier_loss
from quaterion.utils.testing import count_host_syncs
from tests.quaterion.loss.conftest import E, G, K

BAD = torch.tensor([1, 2, 3, 7, -2, 0])
CLASSES = [ArcFaceLoss, CosFaceLoss, SoftmaxLoss, CenterLoss]


def built(cls):
    torch.manual_seed(0)
    return cls(K.shape[0], K.shape[1])


@pytest.fixture
def on_device(monkeypatch):
    monkeypatch.setattr(_classifier_loss, "device_check_needed", lambda value: True)


def value_and_grads(loss_fn, groups):
    embeddings = E.clone().requires_grad_()
    loss_fn.zero_grad()
    value = loss_fn(embeddings, groups)
    value.backward()
    learned = [p.grad.clone() for p in loss_fn.parameters()]
    return value.detach(), embeddings.grad, learned


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_ids_raise_two_calls_later_with_the_bad_call_zeroed(on_device, cls):
    reference = built(cls)  # CPU path: checked at once
    expected, expected_grad, expected_learned = value_and_grads(reference, G)
    loss_fn = built(cls)
    value, grad, learned = value_and_grads(loss_fn, G)  # call 1: valid ids, same value
    torch.testing.assert_close(value, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    for got, want in zip(learned, expected_learned):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with count_host_syncs() as syncs:  # call 2: invalid ids, nothing read on the host
        value = loss_fn(E, BAD)
    assert syncs.total == 0, syncs.by_op
    torch.testing.assert_close(value, torch.zeros(()), rtol=0, atol=0)
    _, grad, learned = value_and_grads(loss_fn, BAD)  # call 3: its gradients are zero too
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=0)
    for got in learned:
        torch.testing.assert_close(got, torch.zeros_like(got), rtol=0, atol=0)
    with pytest.raises(AssertionError) as raised:  # call 4 reads call 2's verdict
        loss_fn(E, G)
    message = str(raised.value)
    assert f"Invalid group ids for {cls.__name__} in loss call 2" in message
    assert "got min -2, max 7" in message and "num_groups=4" in message
    # each bad call raises once: the raising call queued nothing, so call 5 computes and
    # call 6 reports call 3; then the loss works again
    torch.testing.assert_close(loss_fn(E, G).detach(), expected, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="in loss call 3"):
        loss_fn(E, G)
    for _ in range(3):
        torch.testing.assert_close(loss_fn(E, G).detach(), expected, rtol=0, atol=0)


def test_cpu_ids_still_raise_at_once():
    with pytest.raises(AssertionError, match="got min -2, max 7"):
        built(ArcFaceLoss)(E, BAD)


def test_a_bad_last_call_raises_at_the_next_mode_switch(on_device):
    loss_fn = built(SoftmaxLoss)
    loss_fn(E, G)
    loss_fn(E, BAD)  # the last call of an epoch: no later call reads it
    with pytest.raises(AssertionError, match="in loss call 2"):
        loss_fn.eval()
    loss_fn.eval()  # read once
    assert not loss_fn.training
