"""CosFaceLoss: spec value (paper formula), a naive loop, pytorch-metric-learning, properties."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from pytorch_metric_learning.losses import CosFaceLoss as PMLCosFaceLoss

from quaterion.loss.cos_face_loss import CosFaceLoss, cos_face_loss
from tests.quaterion.loss._strategies import (
    check_finite_nonnegative_permutation_invariant,
    group_batches,
    with_kernel,
)

E = torch.tensor(
    [[0, -1, 0.5], [0.1, 2, 0.5], [0, 0.3, 0.2], [1, 0, 0.9], [1.2, -1.2, 0.01], [-0.7, 0, 1.5]]
)
G = torch.tensor([1, 2, 3, 3, 2, 1])
K = torch.tensor([[0.1, -0.2, 0.3, 0], [0.5, 0.1, -0.4, 0.2], [-0.3, 0.6, 0.2, 0.1]])


def naive_cos_face(emb, kernel, groups, margin, scale):
    rows, cols = emb.double().tolist(), kernel.double().T.tolist()
    losses = []
    for e, y in zip(rows, groups.tolist()):
        norm_e = math.sqrt(sum(v * v for v in e))
        logits = []
        for j, w in enumerate(cols):
            cos = sum(a * b for a, b in zip(e, w)) / (norm_e * math.sqrt(sum(v * v for v in w)))
            logits.append(scale * (cos - margin if j == y else cos))
        top = max(logits)
        losses.append(top + math.log(sum(math.exp(z - top) for z in logits)) - logits[y])
    return sum(losses) / len(losses)


def _with_kernel(kernel, **kwargs):
    return with_kernel(CosFaceLoss, kernel, **kwargs)


def test_spec_value_fixed_formula():
    loss = _with_kernel(K)(E, G)
    assert loss.shape == ()
    torch.testing.assert_close(loss, torch.tensor(37.94419), rtol=1e-4, atol=0)


def test_positional_order_is_margin_then_scale():
    loss = CosFaceLoss(3, 4, 0.2, 10.0)
    assert (loss.margin, loss.scale) == (0.2, 10.0)


@pytest.mark.parametrize("margin, scale", [(0.35, 64.0), (0.1, 8.0), (0.0, 1.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop_and_pml(margin, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    kernel = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 5, (8,), generator=gen)
    actual = _with_kernel(kernel, margin=margin, scale=scale)(emb, groups)
    expected = naive_cos_face(emb, kernel, groups, margin, scale)
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64))
    pml = PMLCosFaceLoss(num_classes=5, embedding_size=4, margin=margin, scale=scale)
    with torch.no_grad():
        pml.W.copy_(kernel)
    torch.testing.assert_close(cos_face_loss(emb, kernel, groups, margin, scale), pml(emb, groups))


def test_gradients_reach_embeddings_and_kernel_also_for_identical_rows():
    for emb in (E.clone(), E[:1].repeat(6, 1), K.T[G].clone()):
        loss_fn = _with_kernel(K)
        emb.requires_grad_()
        loss = loss_fn(emb, G)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(emb.grad).all() and torch.isfinite(loss_fn.kernel.grad).all()
        assert loss_fn.kernel.grad.abs().sum() > 0


def test_parameters_and_config():
    loss = CosFaceLoss(64, 100)
    assert [n for n, _ in loss.named_parameters()] == ["kernel"]
    assert loss.kernel.shape == (64, 100) and abs(loss.kernel.std().item() - 0.01) < 0.001
    assert json.loads(json.dumps(CosFaceLoss(3, 4).get_config_dict())) == {
        "distance_metric_name": "cosine",
        "embedding_size": 3,
        "num_groups": 4,
        "margin": 0.35,
        "scale": 64.0,
    }


@pytest.mark.parametrize(
    "args, kwargs, exc, needle",
    [
        ((0, 4), {}, ValueError, "embedding_size"),
        ((3, 0), {}, ValueError, "num_groups"),
        ((3, 4), {"scale": -1}, ValueError, "scale"),
        ((3, 4), {"margin": -0.1}, ValueError, "margin"),
        ((3, 4), {"margin": None}, TypeError, "margin"),
    ],
)
def test_bad_constructor_values(args, kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        CosFaceLoss(*args, **kwargs)


def test_bad_groups():
    loss = CosFaceLoss(3, 4)
    with pytest.raises(AssertionError, match="Invalid group ids"):
        loss(E, torch.tensor([1, 2, 3, 4, 0, 0]))
    with pytest.raises(TypeError, match="groups"):
        loss(E, G.double())


_batches = group_batches(min_batch=1)


@settings(max_examples=30, deadline=None)
@given(_batches)
def test_properties_finite_nonnegative_permutation_invariant(batch):
    loss_fn = _with_kernel(K.double())
    check_finite_nonnegative_permutation_invariant(loss_fn, batch, learned=loss_fn.kernel)
