"""Checks shared by the classifier-style group losses (ArcFace, CosFace, Softmax, Center).

One table per check; the naive loops live in ``_naive``; ArcFace's and CosFace's own files keep
what only they have (the comparison with pytorch-metric-learning).
"""

import json
import math

import pytest
import torch
from hypothesis import given, settings

from quaterion.loss import ArcFaceLoss, CenterLoss, CosFaceLoss, SoftmaxLoss
from quaterion.loss.arcface_loss import arcface_loss
from quaterion.loss.center_loss import center_loss
from quaterion.loss.cos_face_loss import cos_face_loss
from quaterion.loss.softmax_loss import softmax_loss
from tests.quaterion.loss._naive import naive_arcface, naive_center, naive_cos_face, naive_softmax
from tests.quaterion.loss.conftest import E, G, K
from tests.quaterion.loss._strategies import (
    check_finite_nonnegative_permutation_invariant,
    group_batches,
    with_kernel,
)


def with_centers(centers, **kwargs):
    loss = CenterLoss(centers.shape[1], centers.shape[0], **kwargs).to(centers.dtype)
    with torch.no_grad():
        loss.centers.copy_(centers)
    return loss


def build(cls, dtype=torch.float32):
    """The loss with the spec's weights ``K`` (centres ``K.T``); ``(loss, learned tensor)``."""
    if cls is CenterLoss:
        loss = with_centers(K.T.to(dtype))
        return loss, loss.centers
    loss = with_kernel(cls, K.to(dtype))
    return loss, loss.kernel


@pytest.mark.parametrize(
    "cls, expected",
    [
        (ArcFaceLoss, 40.42285),
        (CosFaceLoss, 37.94419),
        (SoftmaxLoss, 7.71766),
        (CenterLoss, 0.13792),
    ],
)
def test_spec_value(cls, expected):
    loss = build(cls)[0](E, G)
    assert loss.shape == ()
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    "cls, name, shape",
    [
        (ArcFaceLoss, "kernel", (64, 100)),
        (CosFaceLoss, "kernel", (64, 100)),
        (SoftmaxLoss, "kernel", (64, 100)),
        (CenterLoss, "centers", (100, 64)),
    ],
)
def test_learned_parameter_and_its_init(cls, name, shape):
    loss = cls(64, 100)
    params = dict(loss.named_parameters())
    assert list(params) == [name] and params[name].shape == shape
    assert loss.num_groups == 100
    if cls is CenterLoss:
        bound = math.sqrt(6 / (64 + 100))  # xavier-uniform, gain 1
        assert loss.centers.abs().max() <= bound and loss.centers.abs().max() > 0.9 * bound
    else:
        assert abs(loss.kernel.std().item() - 0.01) < 0.001


@pytest.mark.parametrize(
    "cls, args, kwargs, own",
    [
        pytest.param(ArcFaceLoss, (), {}, {"scale": 64.0, "margin": 0.5}, id="arcface-defaults"),
        pytest.param(
            ArcFaceLoss,
            (),
            {"scale": 30, "margin": 0.3},
            {"scale": 30.0, "margin": 0.3},
            id="arcface",
        ),
        pytest.param(CosFaceLoss, (), {}, {"margin": 0.35, "scale": 64.0}, id="cosface-defaults"),
        # positional order: margin, then scale
        pytest.param(CosFaceLoss, (0.2, 10.0), {}, {"margin": 0.2, "scale": 10.0}, id="cosface"),
        pytest.param(SoftmaxLoss, (), {}, {"temperature": 0.05}, id="softmax-defaults"),
        pytest.param(CenterLoss, (), {}, {"lambda_c": 0.5}, id="center-defaults"),
    ],
)
def test_attributes_and_json_config(cls, args, kwargs, own):
    loss = cls(3, 4, *args, **kwargs)
    assert {key: getattr(loss, key) for key in own} == own
    assert json.loads(json.dumps(loss.get_config_dict())) == {
        "distance_metric_name": "cosine",
        "embedding_size": 3,
        "num_groups": 4,
        **own,
    }


@pytest.mark.parametrize(
    "cls, args, kwargs, exc, needle",
    [
        (ArcFaceLoss, (0, 4), {}, ValueError, "embedding_size"),
        (ArcFaceLoss, (3, -1), {}, ValueError, "num_groups"),
        (ArcFaceLoss, (3.0, 4), {}, TypeError, "embedding_size"),
        (ArcFaceLoss, (3, 4), {"scale": 0}, ValueError, "scale"),
        (ArcFaceLoss, (3, 4), {"margin": -0.5}, ValueError, "margin"),
        (ArcFaceLoss, (3, 4), {"margin": "0.5"}, TypeError, "margin"),
        (CosFaceLoss, (0, 4), {}, ValueError, "embedding_size"),
        (CosFaceLoss, (3, 0), {}, ValueError, "num_groups"),
        (CosFaceLoss, (3, 4), {"scale": -1}, ValueError, "scale"),
        (CosFaceLoss, (3, 4), {"margin": -0.1}, ValueError, "margin"),
        (CosFaceLoss, (3, 4), {"margin": None}, TypeError, "margin"),
        (SoftmaxLoss, (0, 4), {}, ValueError, "embedding_size"),
        (SoftmaxLoss, (3, 0), {}, ValueError, "num_groups"),
        (SoftmaxLoss, (3, 4), {"temperature": 0.0}, ValueError, "temperature"),
        (SoftmaxLoss, (3, 4), {"temperature": float("inf")}, ValueError, "temperature"),
        (CenterLoss, (0, 4), {}, ValueError, "embedding_size"),
        (CenterLoss, (3, 0), {}, ValueError, "num_groups"),
        (CenterLoss, (3, 4), {"lambda_c": -1.0}, ValueError, "lambda_c"),
        (CenterLoss, (3, True), {}, TypeError, "num_groups"),
    ],
)
def test_bad_constructor_values(cls, args, kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        cls(*args, **kwargs)


@pytest.mark.parametrize(
    "cls, groups, exc, needle",
    [
        (ArcFaceLoss, torch.tensor([1, 2, 3, 4, 0, 0]), AssertionError, "Invalid group ids"),
        (ArcFaceLoss, torch.tensor([-1, 2, 3, 3, 0, 0]), AssertionError, "Invalid group ids"),
        (ArcFaceLoss, G.float(), TypeError, "groups"),
        (ArcFaceLoss, G[:3], ValueError, "groups"),
        (CosFaceLoss, torch.tensor([1, 2, 3, 4, 0, 0]), AssertionError, "Invalid group ids"),
        (CosFaceLoss, G.double(), TypeError, "groups"),
        (SoftmaxLoss, torch.tensor([1, 2, 3, 7, 0, 0]), AssertionError, "Invalid group ids"),
        (SoftmaxLoss, G.float(), TypeError, "groups"),
        (CenterLoss, torch.tensor([1, 2, 3, 4, 0, 0]), AssertionError, "Invalid group ids"),
        (CenterLoss, G.float(), TypeError, "groups"),
    ],
)
def test_bad_groups(cls, groups, exc, needle):
    with pytest.raises(exc, match=needle):
        cls(3, 4)(E, groups)


@pytest.mark.parametrize(
    "cls, embeddings",
    [
        (ArcFaceLoss, K.T[G]),  # cos == 1 exactly
        (CosFaceLoss, K.T[G]),
        (ArcFaceLoss, E[:1].repeat(6, 1)),
        (CosFaceLoss, E[:1].repeat(6, 1)),
        (SoftmaxLoss, E[:1].repeat(6, 1)),
        (CenterLoss, E[:1].repeat(6, 1)),
        (ArcFaceLoss, E),
        (CosFaceLoss, E),
        (SoftmaxLoss, E),
        (CenterLoss, E),
    ],
)
def test_gradients_reach_embeddings_and_weights_also_for_identical_rows(cls, embeddings):
    loss_fn, learned = build(cls)
    emb = embeddings.clone().requires_grad_()
    loss = loss_fn(emb, G)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all() and torch.isfinite(learned.grad).all()
    assert learned.grad.abs().sum() > 0
    if cls in (SoftmaxLoss, CenterLoss):
        assert emb.grad.abs().sum() > 0
    if cls is CenterLoss:  # only used centres move
        assert learned.grad[0].abs().sum() == 0 and learned.grad[1:].abs().sum() > 0


@pytest.mark.parametrize("cls", [ArcFaceLoss, CosFaceLoss, SoftmaxLoss, CenterLoss])
def test_properties_finite_nonnegative_permutation_invariant(cls):
    @settings(max_examples=30, deadline=None)
    @given(group_batches(min_batch=1))
    def check(batch):
        loss_fn, learned = build(cls, torch.float64)
        check_finite_nonnegative_permutation_invariant(loss_fn, batch, learned=learned)

    check()


def _naive_cases():
    cases = []
    for scale, margin in [(64.0, 0.5), (30.0, 0.2), (1.0, 0.0)]:
        kwargs = {"scale": scale, "margin": margin}
        cases.append((ArcFaceLoss, kwargs, naive_arcface, arcface_loss))
    for margin, scale in [(0.35, 64.0), (0.1, 8.0), (0.0, 1.0)]:
        kwargs = {"margin": margin, "scale": scale}
        cases.append((CosFaceLoss, kwargs, naive_cos_face, cos_face_loss))
    for temperature in [0.05, 1.0, 3.0]:
        cases.append((SoftmaxLoss, {"temperature": temperature}, naive_softmax, softmax_loss))
    for lambda_c in [0.5, 2.0, 0.0]:
        cases.append((CenterLoss, {"lambda_c": lambda_c}, naive_center, center_loss))
    return [pytest.param(*case, id=f"{case[0].__name__}-{case[1]}") for case in cases]


@pytest.mark.parametrize("cls, kwargs, naive, functional", _naive_cases())
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop(cls, kwargs, naive, functional, seed):
    """Module and functional form against a loop over rows (float64)."""
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    weights = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 5, (8,), generator=gen)
    if cls is CenterLoss:
        weights = weights.T.contiguous()
        module = with_centers(weights, **kwargs)
    else:
        module = with_kernel(cls, weights, **kwargs)
    expected = torch.tensor(naive(emb, weights, groups, *kwargs.values()), dtype=torch.float64)
    torch.testing.assert_close(module(emb, groups), expected)
    torch.testing.assert_close(functional(emb, weights, groups, *kwargs.values()), expected)


@pytest.mark.parametrize("cls", [SoftmaxLoss, ArcFaceLoss, CosFaceLoss, CenterLoss])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_direct_call_in_another_dtype_computes_in_the_promoted_dtype(cls, dtype):
    # float32 parameters, embeddings of another dtype: the loss is the one the loss module
    # computes on both cast to their promoted dtype (float64, or float32 for half types)
    loss, learned = build(cls)
    embeddings = E.to(dtype).requires_grad_()
    value = loss(embeddings, G)
    value.backward()
    wide = torch.promote_types(dtype, torch.float32)
    reference, _ = build(cls, wide)
    expected = reference(E.to(dtype).to(wide), G)
    assert value.dtype == wide
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    assert embeddings.grad.dtype == dtype and learned.grad.dtype == torch.float32
    assert torch.isfinite(embeddings.grad.float()).all()
