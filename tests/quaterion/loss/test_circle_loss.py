"""CircleLoss: spec values, a naive pair loop, pytorch-metric-learning's kernel, properties."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from pytorch_metric_learning.losses import CircleLoss as PMLCircleLoss

from quaterion.distances import Cosine, Distance
from quaterion.loss.circle_loss import CircleLoss, circle_loss
from tests.quaterion.loss.conftest import E, G
from tests.quaterion.loss._strategies import (
    check_finite_nonnegative_permutation_invariant,
    group_batches,
)


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def naive_circle(emb: torch.Tensor, groups: torch.Tensor, margin: float, gamma: float) -> float:
    """Loop over unordered pairs i < j with cosine similarity rescaled to [0, 1]."""
    rows = emb.double().tolist()
    labels = groups.tolist()
    pos, neg = [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            dot = sum(a * b for a, b in zip(rows[i], rows[j]))
            norm_i = max(math.sqrt(sum(a * a for a in rows[i])), 1e-12)
            norm_j = max(math.sqrt(sum(b * b for b in rows[j])), 1e-12)
            s = (dot / (norm_i * norm_j) + 1) / 2
            if labels[i] == labels[j]:
                pos.append(-gamma * max(1 + margin - s, 0.0) * (s - (1 - margin)))
            else:
                neg.append(gamma * max(s + margin, 0.0) * (s - margin))
    total = _logsumexp(neg) + _logsumexp(pos)
    if total == -math.inf:
        return 0.0
    return max(total, 0.0) + math.log1p(math.exp(-abs(total)))  # stable softplus


def test_spec_value_uses_paper_weights():
    loss = CircleLoss()(E, G)
    assert loss.shape == ()
    torch.testing.assert_close(loss, torch.tensor(383.16077), rtol=1e-4, atol=0)


def test_all_distinct_groups_give_zero_with_finite_grad():
    emb = E.clone().requires_grad_()
    loss = CircleLoss()(emb, torch.arange(6))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(emb.grad).all()


def test_single_group_gives_zero():
    assert CircleLoss()(E, torch.zeros(6, dtype=torch.long)).item() == 0.0


@pytest.mark.parametrize("margin, gamma", [(0.25, 256.0), (0.4, 80.0), (0.1, 4.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_loop(margin, gamma, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 3, (7,), generator=gen)
    expected = naive_circle(emb, groups, margin, gamma)
    actual = CircleLoss(margin=margin, scale_factor=gamma)(emb, groups)
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64))


def test_matches_pml_kernel_on_pooled_pairs():
    """PML computes the same softplus(lse_p + lse_n) per anchor row; feed it one row holding
    every unordered pair so both pool the whole batch (quaterion's definition)."""
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 3, (8,), generator=gen)
    margin, gamma = 0.25, 64.0
    sim = Cosine.similarity_matrix(emb)
    upper = torch.ones(8, 8, dtype=torch.bool).triu(1)
    same = groups[:, None] == groups[None, :]
    pml = PMLCircleLoss(m=margin, gamma=gamma)
    out = pml._compute_loss(
        sim[upper].reshape(1, -1),
        (same & upper)[upper].reshape(1, -1),
        (~same & upper)[upper].reshape(1, -1),
    )
    expected = out["loss"]["losses"].reshape(())
    torch.testing.assert_close(
        circle_loss(sim, groups, margin=margin, scale_factor=gamma), expected
    )


def test_pml_per_anchor_form_differs_deliberately():
    """PML averages per-anchor terms on cosine in [-1, 1]; quaterion pools pairs on (cos+1)/2."""
    gen = torch.Generator().manual_seed(4)
    emb = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    ours = CircleLoss(margin=0.4, scale_factor=80)(emb, groups)
    theirs = PMLCircleLoss(m=0.4, gamma=80)(emb, groups)
    assert not torch.isclose(ours, theirs, rtol=1e-3)


def test_reference_groups_use_every_query_reference_pair():
    gen = torch.Generator().manual_seed(5)
    query = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    ref = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    q_groups, r_groups = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 2, 3])
    sim = Cosine.similarity_matrix(query, ref)
    actual = circle_loss(sim, q_groups, r_groups, margin=0.25, scale_factor=16.0)
    pos, neg = [], []
    for i in range(4):
        for j in range(5):
            s = sim[i, j].item()
            if q_groups[i] == r_groups[j]:
                pos.append(-16.0 * max(1.25 - s, 0) * (s - 0.75))
            else:
                neg.append(16.0 * max(s + 0.25, 0) * (s - 0.25))
    expected = math.log1p(math.exp(_logsumexp(neg) + _logsumexp(pos)))
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64))


def test_weights_are_detached():
    """Gradient equals the one of the same formula with constant weights."""
    emb = E.double().clone().requires_grad_()
    CircleLoss(scale_factor=8)(emb, G).backward()
    emb2 = E.double().clone().requires_grad_()
    sim = Cosine.similarity_matrix(emb2)
    const = sim.detach()
    upper = torch.ones(6, 6, dtype=torch.bool).triu(1)
    same = (G[:, None] == G[None, :]) & upper
    diff = (G[:, None] != G[None, :]) & upper
    lp = (-8 * torch.relu(1.25 - const) * (sim - 0.75))[same]
    ln = (8 * torch.relu(const + 0.25) * (sim - 0.25))[diff]
    torch.nn.functional.softplus(torch.logsumexp(lp, 0) + torch.logsumexp(ln, 0)).backward()
    torch.testing.assert_close(emb.grad, emb2.grad)


@pytest.mark.parametrize("metric", list(Distance))
def test_backward_finite_for_every_distance_and_identical_rows(metric):
    for emb in (E.clone(), E[:1].repeat(6, 1)):
        emb.requires_grad_()
        loss = CircleLoss(distance_metric_name=metric)(emb, G)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()
    assert emb.grad is not None


def test_config_dict_json_and_roundtrip():
    loss = CircleLoss(margin=0.3, scale_factor=32)
    config = loss.get_config_dict()
    assert json.loads(json.dumps(config)) == {
        "distance_metric_name": "cosine",
        "margin": 0.3,
        "scale_factor": 32.0,
    }
    assert CircleLoss(**config).get_config_dict() == config
    assert (loss.op, loss.on, loss.delta_positive, loss.delta_negative) == (1.3, -0.3, 0.7, 0.3)


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"margin": -0.1}, ValueError, "margin"),
        ({"scale_factor": 0}, ValueError, "scale_factor"),
        ({"scale_factor": float("nan")}, ValueError, "scale_factor"),
        ({"margin": "big"}, TypeError, "margin"),
        ({"scale_factor": None}, TypeError, "scale_factor"),
        ({"distance_metric_name": "foo"}, ValueError, "foo"),
    ],
)
def test_bad_constructor_values(kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        CircleLoss(**kwargs)


def test_non_integer_groups_rejected():
    with pytest.raises(TypeError, match="groups"):
        CircleLoss()(E, G.float())
    with pytest.raises(ValueError, match="groups"):
        CircleLoss()(E, G[:4])


_batches = group_batches(min_batch=2)


@settings(max_examples=30, deadline=None)
@given(_batches)
def test_properties_finite_nonnegative_permutation_invariant(batch):
    check_finite_nonnegative_permutation_invariant(CircleLoss(), batch, tol=1e-9)
