import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import distances, losses, reducers
from torch.testing import assert_close

from quaterion.distances import Distance
from quaterion.loss import OnlineContrastiveLoss
from quaterion.loss.online_contrastive_loss import (
    online_contrastive_loss_all,
    online_contrastive_loss_hard,
)


def naive(dist, groups, margin, mining):
    """Loop over anchors/pairs; negatives are pairs of *different* groups."""
    n = len(groups)
    pos_terms, neg_terms, hardest_pos, hardest_neg = [], [], [], []
    for i in range(n):
        row_pos = [dist[i, j] for j in range(n) if j != i and groups[i] == groups[j]]
        row_neg = [dist[i, j] for j in range(n) if groups[i] != groups[j]]
        pos_terms += row_pos
        neg_terms += [torch.relu(margin - v) for v in row_neg]
        if row_pos:
            hardest_pos.append(torch.stack(row_pos).max())
        if row_neg:
            hardest_neg.append(torch.relu(margin - torch.stack(row_neg).min()))
    zero = dist.sum() * 0
    if mining == "all":
        pos = torch.stack(pos_terms).mean() if pos_terms else zero
        neg = torch.stack(neg_terms).mean() if neg_terms else zero
    else:
        nonzero = [p for p in hardest_pos if p != 0]
        pos = torch.stack(hardest_pos).sum() / len(nonzero) if nonzero else zero
        neg = torch.stack(hardest_neg).mean() if hardest_neg else zero
    return (pos + neg) / 2


def _batch(seed, n=8):
    gen = torch.Generator().manual_seed(seed)
    groups = (torch.arange(n) % 3)[torch.randperm(n, generator=gen)]
    return torch.randn(n, 4, generator=gen, dtype=torch.float64), groups


@pytest.mark.parametrize("mining, expected", [("all", 0.31435), ("hard", 0.41375)])
def test_spec_values(spec_embeddings, spec_groups, mining, expected):
    value = OnlineContrastiveLoss(mining=mining)(spec_embeddings, spec_groups)
    assert value.shape == ()
    assert value.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("mining", ["all", "hard"])
@pytest.mark.parametrize("distance", [Distance.COSINE, Distance.EUCLIDEAN, Distance.MANHATTAN])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop(mining, distance, seed):
    emb, groups = _batch(seed)
    loss = OnlineContrastiveLoss(margin=0.8, distance_metric_name=distance, mining=mining)
    x1, x2 = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    got = loss(x1, groups)
    got.backward()
    expected = naive(loss.distance_metric.distance_matrix(x2), groups.tolist(), 0.8, mining)
    expected.backward()
    assert_close(got, expected)
    assert_close(x1.grad, x2.grad)


def test_all_is_half_pml_contrastive_with_mean_reducer():
    """PML ContrastiveLoss(pos_margin=0, neg_margin=m) sums the two means; ours averages them."""
    emb, groups = _batch(2, n=12)
    ours = OnlineContrastiveLoss(margin=2.0, distance_metric_name=Distance.EUCLIDEAN, mining="all")
    pml = losses.ContrastiveLoss(
        pos_margin=0,
        neg_margin=2.0,
        distance=distances.LpDistance(normalize_embeddings=False),
        reducer=reducers.MeanReducer(),
    )
    assert_close(ours(emb, groups), pml(emb, groups) / 2)


def test_hard_negative_term_pushes_negatives():
    """Fixed bug: an object is not its own negative, so the hard negative term varies."""
    groups = torch.tensor([0, 0, 1, 1])
    close = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.9, 0.1]])
    far = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    loss = OnlineContrastiveLoss(margin=0.5, mining="hard")
    assert loss(far, groups).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(close, groups).item() > 0.2


@pytest.mark.parametrize("mining", ["all", "hard"])
@pytest.mark.parametrize("distance", list(Distance))
def test_backward_every_distance_and_identical_embeddings(
    spec_embeddings, spec_groups, mining, distance
):
    for emb in (spec_embeddings.clone(), torch.ones(6, 3)):
        emb.requires_grad_(True)
        value = OnlineContrastiveLoss(distance_metric_name=distance, mining=mining)(
            emb, spec_groups
        )
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("mining", ["all", "hard"])
def test_single_group_and_distinct_groups(mining):
    emb = torch.randn(5, 3, requires_grad=True)
    for groups in (torch.zeros(5, dtype=torch.long), torch.arange(5)):
        value = OnlineContrastiveLoss(mining=mining)(emb, groups)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(emb.grad).all()


def test_config_and_errors(spec_embeddings):
    config = OnlineContrastiveLoss(0.3, Distance.EUCLIDEAN, "all").get_config_dict()
    assert config == {"distance_metric_name": "euclidean", "margin": 0.3, "mining": "all"}
    assert OnlineContrastiveLoss(**json.loads(json.dumps(config))).get_config_dict() == config
    with pytest.raises(ValueError, match="'all', 'hard'"):
        OnlineContrastiveLoss(mining="semi_hard")
    with pytest.raises(TypeError, match="groups"):
        OnlineContrastiveLoss()(spec_embeddings, torch.rand(6))
    with pytest.raises(NotImplementedError, match="OnlineContrastiveLoss"):
        OnlineContrastiveLoss().xbm_loss(
            spec_embeddings, torch.zeros(6, dtype=torch.long), spec_embeddings, torch.zeros(6)
        )


@settings(max_examples=25, deadline=None)
@given(
    groups=st.lists(st.integers(0, 3), min_size=2, max_size=8),
    seed=st.integers(0, 2**16),
    mining=st.sampled_from(["all", "hard"]),
    distance=st.sampled_from([Distance.COSINE, Distance.EUCLIDEAN, Distance.MANHATTAN]),
)
def test_properties(groups, seed, mining, distance):
    gen = torch.Generator().manual_seed(seed)
    groups = torch.tensor(groups)
    emb = torch.randn(len(groups), 3, generator=gen, dtype=torch.float64)
    loss = OnlineContrastiveLoss(distance_metric_name=distance, mining=mining)
    value = loss(emb, groups)
    assert torch.isfinite(value) and value >= 0
    perm = torch.randperm(len(groups), generator=gen)
    assert_close(loss(emb[perm], groups[perm]), value)


def test_module_calls_function(spec_embeddings, spec_groups):
    for mining, function in [
        ("all", online_contrastive_loss_all),
        ("hard", online_contrastive_loss_hard),
    ]:
        loss = OnlineContrastiveLoss(0.7, Distance.MANHATTAN, mining)
        dist = loss.distance_metric.distance_matrix(spec_embeddings)
        expected = function(dist, spec_groups, spec_groups, 0.7)
        assert_close(loss(spec_embeddings, spec_groups), expected)
