import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import distances, losses, reducers
from torch.testing import assert_close

from quaterion.distances import Distance
from quaterion.loss import ContrastiveLoss
from quaterion.loss.contrastive_loss import contrastive_loss


def _l2(a, b, eps=0.0):
    return math.sqrt(sum((u - v + eps) ** 2 for u, v in zip(a, b)))


def naive(emb, pairs, labels, subgroups, margin, size_average):
    """Python floats: Euclidean row distance (torch's eps 1e-6), loop over pairs and rows."""
    rows = emb.tolist()
    nearest_other = []
    for i, row in enumerate(rows):
        others = [_l2(row, rows[j]) for j in range(len(rows)) if subgroups[i] != subgroups[j]]
        nearest_other.append(min(others) if others else math.inf)
    losses_ = []
    for (a, b), y in zip(pairs.tolist(), labels.tolist()):
        d = _l2(rows[a], rows[b], eps=1e-6)
        value = 0.5 * (y * d**2 + (1 - y) * max(margin - d, 0.0) ** 2)
        value += max(margin - nearest_other[a], 0.0) ** 2 + max(margin - nearest_other[b], 0.0) ** 2
        losses_.append(value)
    return sum(losses_) / len(losses_) if size_average else sum(losses_)


def test_spec_values():
    emb = torch.tensor([[0, 1, 0.5], [0.1, 2, 0], [0, 0.5, 0], [1, 0, 0]])
    pairs, labels = torch.tensor([[0, 2], [1, 3]]), torch.tensor([1, 0])
    value = ContrastiveLoss(size_average=False)(emb, pairs, labels, torch.tensor([42, 13, 42, 13]))
    assert value.shape == ()
    assert value.item() == pytest.approx(0.70383, rel=1e-4)
    value = ContrastiveLoss(size_average=True)(emb, pairs, labels, torch.zeros(4))
    assert value.item() == pytest.approx(0.00279, abs=5e-6)  # spec gives 5 decimals


@pytest.mark.parametrize("size_average", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_loop_with_soft_scores_and_subgroups(size_average, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 3, generator=gen, dtype=torch.float64) * 0.5
    pairs = torch.tensor([[0, 4], [1, 5], [2, 6], [3, 7]])
    labels = torch.rand(4, generator=gen, dtype=torch.float64)
    subgroups = torch.tensor([0.0, 1, 0, 2, 1, 1, 0, 2])
    loss = ContrastiveLoss(Distance.EUCLIDEAN, margin=1.5, size_average=size_average)
    got = loss(emb, pairs, labels, subgroups)
    expected = naive(emb, pairs, labels, subgroups.tolist(), 1.5, size_average)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_positive_pairs_equal_half_pml_squared_lp():
    """PML's ContrastiveLoss uses an unsquared hinge for negatives (deliberate difference);
    with positive pairs only ours is 1/2 mean d^2, PML with LpDistance(power=2) is mean d^2."""
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    pairs = torch.tensor([[0, 4], [1, 5], [2, 6], [3, 7]])
    ours = ContrastiveLoss(Distance.EUCLIDEAN)(emb, pairs, torch.ones(4), torch.zeros(8))
    empty = torch.empty(0, dtype=torch.long)
    pml = losses.ContrastiveLoss(
        pos_margin=0,
        neg_margin=0.5,
        distance=distances.LpDistance(normalize_embeddings=False, power=2),
        reducer=reducers.MeanReducer(),
    )(emb, torch.zeros(8), (pairs[:, 0], pairs[:, 1], empty, empty))
    assert_close(ours, pml / 2, rtol=1e-5, atol=1e-6)  # torch's pairwise eps 1e-6


@pytest.mark.parametrize("distance", list(Distance))
def test_backward_every_distance(spec_embeddings, spec_pairs, distance):
    for emb in (spec_embeddings.clone(), torch.ones(6, 3)):
        emb.requires_grad_(True)
        value = ContrastiveLoss(distance)(
            emb, spec_pairs, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 1, 0, 1, 0, 1.0])
        )
        value.backward()
        assert value.shape == ()
        assert torch.isfinite(value) and torch.isfinite(emb.grad).all()
        assert emb.grad.abs().sum() > 0 or bool((emb == 1).all())


def test_single_subgroup_has_no_imposter_term(spec_embeddings, spec_pairs):
    labels = torch.tensor([1.0, 0.0, 1.0])
    loss = ContrastiveLoss(Distance.EUCLIDEAN, margin=10.0)
    without = loss(spec_embeddings, spec_pairs, labels, None)
    assert_close(loss(spec_embeddings, spec_pairs, labels, torch.full((6,), 7.0)), without)
    assert loss(spec_embeddings, spec_pairs, labels, torch.arange(6.0)) > without


def test_config_and_errors(spec_embeddings, spec_pairs):
    config = ContrastiveLoss(Distance.MANHATTAN, 0.3, False).get_config_dict()
    assert config == {"distance_metric_name": "manhattan", "margin": 0.3, "size_average": False}
    assert ContrastiveLoss(**json.loads(json.dumps(config))).get_config_dict() == config
    subgroups = torch.zeros(6)
    with pytest.raises(TypeError, match="labels"):
        ContrastiveLoss()(spec_embeddings, spec_pairs, [1, 0, 1], subgroups)
    with pytest.raises(ValueError, match="labels"):
        ContrastiveLoss()(spec_embeddings, spec_pairs, torch.ones(2), subgroups)
    with pytest.raises(TypeError, match="pairs"):
        ContrastiveLoss()(spec_embeddings, spec_pairs.float(), torch.ones(3), subgroups)
    with pytest.raises(ValueError, match="pairs"):
        ContrastiveLoss()(spec_embeddings, spec_pairs.flatten(), torch.ones(3), subgroups)
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(margin=-1.0)
    with pytest.raises(ValueError, match="dot_product"):
        ContrastiveLoss("dot")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    distance=st.sampled_from([Distance.COSINE, Distance.EUCLIDEAN, Distance.MANHATTAN]),
)
def test_properties(n, seed, distance):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(2 * n, 3, generator=gen, dtype=torch.float64)
    pairs = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1)
    labels = torch.rand(n, generator=gen, dtype=torch.float64)
    subgroups = torch.randint(0, 3, (2 * n,), generator=gen).double()
    loss = ContrastiveLoss(distance)
    value = loss(emb, pairs, labels, subgroups)
    assert torch.isfinite(value) and value >= 0
    perm = torch.randperm(n, generator=gen)
    assert_close(loss(emb, pairs[perm], labels[perm], subgroups), value)


def test_module_calls_function(spec_embeddings, spec_pairs):
    labels, subgroups = torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 1, 0, 1, 2, 2])
    loss = ContrastiveLoss(Distance.MANHATTAN, margin=4.0, size_average=False)
    expected = contrastive_loss(
        spec_embeddings, spec_pairs, labels, subgroups, loss.distance_metric, 4.0, False
    )
    assert_close(loss(spec_embeddings, spec_pairs, labels, subgroups), expected)
