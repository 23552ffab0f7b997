import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import distances, losses, miners, reducers
from torch.testing import assert_close

from quaterion.distances import Distance
from quaterion.loss import TripletLoss
from quaterion.loss.triplet_loss import (
    triplet_loss_all,
    triplet_loss_batch_hard,
    triplet_loss_semi_hard,
)

from ._spy import LargestTensor

# ---------- naive references: loops over anchors / triplets on a distance matrix ----------


def naive_all(dist, q_groups, r_groups, margin, same_batch=True):
    terms = []
    for a in range(dist.shape[0]):
        for p in range(dist.shape[1]):
            if q_groups[a] != r_groups[p] or (same_batch and a == p):
                continue
            for n in range(dist.shape[1]):
                if q_groups[a] == r_groups[n] or (same_batch and (n == a or n == p)):
                    continue
                terms.append(torch.relu(dist[a, p] - dist[a, n] + margin))
    if not terms:
        return dist.sum() * 0
    terms = torch.stack(terms)
    return terms.sum() / ((terms > 1e-16).sum() + 1e-16)


def naive_hard(dist, q_groups, r_groups, margin, soft, same_batch=True):
    """Literal losses.md §6.1 "hard".

    p_i = max_j P_ij D_ij, n_i = min_j (D_ij + max_j D_ij (1 - N_ij)).
    """
    pos, neg = [], []
    for a in range(dist.shape[0]):
        row_max = max(dist[a, j] for j in range(dist.shape[1]))
        row_p, row_n = [], []
        for j in range(dist.shape[1]):
            is_pos = q_groups[a] == r_groups[j] and not (same_batch and a == j)
            is_neg = q_groups[a] != r_groups[j]
            row_p.append(dist[a, j] if is_pos else dist[a, j] * 0)
            row_n.append(dist[a, j] if is_neg else dist[a, j] + row_max)
        pos.append(max(row_p))
        neg.append(min(row_n))
    pos, neg = torch.stack(pos), torch.stack(neg)
    if soft:
        return torch.nn.functional.softplus(pos - neg).mean()
    return torch.relu((pos - neg) / neg.mean() + margin).mean()


def naive_semi_hard(dist, q_groups, r_groups, margin):
    pos, neg = [], []
    for i in range(dist.shape[0]):
        for j in range(dist.shape[1]):
            (pos if q_groups[i] == r_groups[j] else neg).append(dist[i, j])
    terms = [torch.clamp(u - v + margin, 0, margin) for u in pos for v in neg]
    return torch.stack(terms).mean()


def _random_batch(seed, n=8, d=4, num_groups=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=gen, dtype=dtype)
    groups = torch.arange(n) % num_groups
    return emb, groups[torch.randperm(n, generator=gen)]


MINING_NAIVE = {
    ("all", False): lambda d, qg, rg, m: naive_all(d, qg, rg, m),
    ("hard", False): lambda d, qg, rg, m: naive_hard(d, qg, rg, m, soft=False),
    ("hard", True): lambda d, qg, rg, m: naive_hard(d, qg, rg, m, soft=True),
    ("semi_hard", False): naive_semi_hard,
}


# ---------- normative values (losses.md §9 item 4) ----------


@pytest.mark.parametrize(
    "distance, mining, soft, expected",
    [
        (Distance.COSINE, "all", False, 0.56684),
        (Distance.COSINE, "hard", False, 2.66360),
        (Distance.COSINE, "hard", True, 0.88032),
        (Distance.COSINE, "semi_hard", False, 0.26716),
        (Distance.EUCLIDEAN, "all", False, 1.04306),
        (Distance.EUCLIDEAN, "hard", False, 0.94389),
        (Distance.EUCLIDEAN, "hard", True, 1.14899),
        (Distance.EUCLIDEAN, "semi_hard", False, 0.15215),
    ],
)
def test_spec_values(spec_embeddings, spec_groups, distance, mining, soft, expected):
    loss = TripletLoss(distance_metric_name=distance, mining=mining, soft=soft)
    value = loss(spec_embeddings, spec_groups)
    assert value.shape == ()
    assert value.item() == pytest.approx(expected, rel=1e-4)


# ---------- against naive loops: values and gradients ----------


@pytest.mark.parametrize("mining, soft", list(MINING_NAIVE))
@pytest.mark.parametrize("distance", list(Distance))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop(mining, soft, distance, seed):
    emb, groups = _random_batch(seed)
    loss = TripletLoss(margin=0.3, distance_metric_name=distance, mining=mining, soft=soft)
    x1 = emb.clone().requires_grad_(True)
    got = loss(x1, groups)
    got.backward()
    x2 = emb.clone().requires_grad_(True)
    dist = loss.distance_metric.distance_matrix(x2)
    expected = MINING_NAIVE[(mining, soft)](dist, groups.tolist(), groups.tolist(), 0.3)
    expected.backward()
    assert_close(got, expected)
    assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("mining, soft", [("hard", False), ("hard", True), ("semi_hard", False)])
def test_xbm_matches_naive_loop_with_memory_as_reference(mining, soft):
    emb, groups = _random_batch(3, n=6)
    memory, memory_groups = _random_batch(4, n=9)
    loss = TripletLoss(distance_metric_name=Distance.EUCLIDEAN, mining=mining, soft=soft)
    x = emb.clone().requires_grad_(True)
    got = loss.xbm_loss(x, groups, memory, memory_groups)
    got.backward()
    x2 = emb.clone().requires_grad_(True)
    dist = loss.distance_metric.distance_matrix(x2, memory)
    if mining == "hard":
        expected = naive_hard(dist, groups.tolist(), memory_groups.tolist(), 0.5, soft, False)
    else:
        expected = naive_semi_hard(dist, groups.tolist(), memory_groups.tolist(), 0.5)
    expected.backward()
    assert_close(got, expected)
    assert_close(x.grad, x2.grad)


def test_xbm_spec_behaviour(spec_embeddings, spec_groups):
    torch.manual_seed(0)
    memory, memory_groups = torch.rand(100, 3), torch.randint(1, 10, (100,))
    hard = TripletLoss(mining="hard")
    regular = hard(spec_embeddings, spec_groups)
    xbm = hard.xbm_loss(spec_embeddings, spec_groups, memory, memory_groups)
    assert xbm.shape == regular.shape
    assert not torch.isclose(xbm, regular)
    for loss, mem, mem_groups in [
        (TripletLoss(mining="all"), memory, memory_groups),
        (hard, torch.empty(0, 3), torch.empty(0, dtype=torch.long)),
    ]:
        zero = loss.xbm_loss(spec_embeddings, spec_groups, mem, mem_groups)
        assert zero.dtype == spec_embeddings.dtype and zero.shape == ()
        assert zero.item() == 0.0


def test_private_helpers_accept_sets_of_different_sizes(spec_embeddings, spec_groups):
    loss = TripletLoss(mining="semi_hard")
    emb_b, groups_b = spec_embeddings[:3], spec_groups[:3]
    got = loss._semi_hard_triplet_loss(
        embeddings_a=spec_embeddings, groups_a=spec_groups, embeddings_b=emb_b, groups_b=groups_b
    )
    dist = loss.distance_metric.distance_matrix(spec_embeddings, emb_b)
    assert_close(got, naive_semi_hard(dist, spec_groups.tolist(), groups_b.tolist(), 0.5))
    got_hard = triplet_loss_batch_hard(dist, spec_groups, groups_b, 0.5, False)
    expected = naive_hard(dist, spec_groups.tolist(), groups_b.tolist(), 0.5, False, False)
    assert_close(got_hard, expected)


# ---------- against pytorch-metric-learning ----------


def test_all_equals_pml_triplet_margin_loss_euclidean():
    emb, groups = _random_batch(5, n=12, d=5, num_groups=4)
    ours = TripletLoss(margin=0.7, distance_metric_name=Distance.EUCLIDEAN, mining="all")
    pml = losses.TripletMarginLoss(
        margin=0.7, distance=distances.LpDistance(normalize_embeddings=False)
    )
    assert_close(ours(emb, groups), pml(emb, groups))
    mined = miners.TripletMarginMiner(
        margin=0.7,
        type_of_triplets="all",
        distance=distances.LpDistance(normalize_embeddings=False),
    )(emb, groups)
    assert_close(ours(emb, groups), pml(emb, groups, mined))


def test_all_cosine_is_half_pml_cosine_with_double_margin():
    """Our cosine distance_matrix is (1 - cos) / 2, so d_ap - d_an = (s_an - s_ap) / 2."""
    emb, groups = _random_batch(6, n=12, d=5, num_groups=4)
    ours = TripletLoss(margin=0.2, distance_metric_name=Distance.COSINE, mining="all")
    pml = losses.TripletMarginLoss(margin=0.4, distance=distances.CosineSimilarity())
    assert_close(ours(emb, groups), pml(emb, groups) / 2)


def test_hard_soft_equals_pml_batch_hard_smooth_loss():
    """Deliberate difference: non-soft "hard" divides by the mean hardest negative (upstream
    anti-collapse trick), so only the soft variant coincides with PML's batch-hard loss."""
    emb, groups = _random_batch(7, n=12, d=5, num_groups=3)
    lp = distances.LpDistance(normalize_embeddings=False)
    ours = TripletLoss(distance_metric_name=Distance.EUCLIDEAN, mining="hard", soft=True)
    pml = losses.TripletMarginLoss(margin=0.0, smooth_loss=True, distance=lp)
    indices = miners.BatchHardMiner(distance=lp)(emb, groups)
    assert_close(ours(emb, groups), pml(emb, groups, indices))
    # non-soft: PML's hinge on the same triplets after scaling by the mean hardest negative
    hard = TripletLoss(margin=0.5, distance_metric_name=Distance.EUCLIDEAN, mining="hard")
    dist = torch.cdist(emb, emb)
    scale = dist[indices[0], indices[2]].mean()
    pml_scaled = losses.TripletMarginLoss(
        margin=0.5,
        distance=lp,
        reducer=reducers.MeanReducer(),
    )(emb / scale, groups, indices)
    assert_close(hard(emb, groups), pml_scaled)


# ---------- scale: no B^3 / |pos| x |neg| tensor ----------


@pytest.mark.parametrize("mining", ["all", "semi_hard", "hard"])
def test_no_cubic_intermediate(mining):
    emb, groups = _random_batch(8, n=64, d=8, num_groups=4, dtype=torch.float32)
    emb.requires_grad_(True)
    with LargestTensor() as spy:
        TripletLoss(mining=mining)(emb, groups).backward()
    assert spy.numel <= 64 * 65, spy.numel  # O(B^2); B^3 would be 262144
    assert torch.isfinite(emb.grad).all()


def test_semi_hard_with_memory_stays_linear_in_pairs():
    emb, groups = _random_batch(9, n=16, d=4, num_groups=4, dtype=torch.float32)
    memory, memory_groups = _random_batch(10, n=200, d=4, num_groups=4, dtype=torch.float32)
    with LargestTensor() as spy:
        TripletLoss(mining="semi_hard").xbm_loss(emb, groups, memory, memory_groups)
    assert spy.numel <= 16 * 201  # |pos| x |neg| would be ~ 800 x 2400


@pytest.mark.parametrize(
    "mining, batch",
    [
        ("all", 512),
        ("semi_hard", 512),
        ("all", 2048),
        ("semi_hard", 2048),
    ],
)
def test_large_batch_runs(mining, batch):
    """B x B x B floats would be 512 MiB at B=512 and 32 GiB at B=2048."""
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(batch, 128, generator=gen, requires_grad=True)
    groups = torch.randint(0, batch // 8, (batch,), generator=gen)
    with LargestTensor() as spy:
        value = TripletLoss(mining=mining, distance_metric_name=Distance.EUCLIDEAN)(emb, groups)
    assert spy.numel <= 2 * batch * batch  # quadratic: a cubic tensor would be ~B/2 times larger
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_sorted_formulation_equals_plain_cubic_formula_float32():
    """The O(B^2 log B) path equals the plain B x B x B formula (as upstream builds it)."""
    emb, groups = _random_batch(11, n=40, d=6, num_groups=5, dtype=torch.float32)
    dist = torch.cdist(emb, emb)
    same = groups[:, None] == groups[None, :]
    eye = torch.eye(40, dtype=torch.bool)
    valid = (same & ~eye)[:, :, None] & ~same[:, None, :]
    cube = torch.relu((dist[:, :, None] - dist[:, None, :] + 0.5) * valid)
    plain = cube.sum() / ((cube > 1e-16).sum() + 1e-16)
    assert_close(triplet_loss_all(dist, groups, groups, 0.5), plain)
    pos, neg = dist[same], dist[~same]
    plain_semi = torch.clamp(pos[:, None] - neg[None, :] + 0.5, 0, 0.5).mean()
    assert_close(triplet_loss_semi_hard(dist, groups, groups, 0.5), plain_semi)


# ---------- edge cases ----------


@pytest.mark.parametrize("batch", [6, 64])  # cdist switches to a matmul path above 25 rows
@pytest.mark.parametrize("mining, soft", list(MINING_NAIVE))
@pytest.mark.parametrize("distance", list(Distance))
def test_identical_embeddings_finite_gradients(mining, soft, distance, batch):
    emb = torch.ones(batch, 3, requires_grad=True)
    groups = torch.arange(batch) % 3
    value = TripletLoss(distance_metric_name=distance, mining=mining, soft=soft)(emb, groups)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("mining", ["all", "hard", "semi_hard"])
def test_no_valid_triplets_gives_attached_zero_or_finite(mining):
    emb = torch.randn(5, 3, requires_grad=True)
    one_group = torch.zeros(5, dtype=torch.long)
    value = TripletLoss(mining=mining)(emb, one_group)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(emb.grad).all()
    if mining != "hard":  # "hard" keeps upstream's hinge of p - n with n = 2 * row max
        assert value.item() == 0.0
    distinct = TripletLoss(mining=mining)(emb, torch.arange(5))
    assert torch.isfinite(distinct)
    if mining == "all":
        assert distinct.item() == 0.0


def test_semi_hard_single_group_is_zero_not_nan(spec_embeddings):
    value = TripletLoss(mining="semi_hard")(spec_embeddings, torch.ones(6, dtype=torch.long))
    assert value.item() == 0.0


# ---------- configuration and errors ----------


def test_config_dict(spec_embeddings):
    assert TripletLoss().get_config_dict() == {
        "distance_metric_name": "cosine",
        "margin": 0.5,
        "mining": "hard",
        "soft": False,
    }
    assert (
        json.loads(json.dumps(TripletLoss().get_config_dict()))["distance_metric_name"] == "cosine"
    )
    config = TripletLoss(0.2, Distance.MANHATTAN, "semi_hard").get_config_dict()
    assert TripletLoss(**config).get_config_dict() == config


@pytest.mark.parametrize("bad", ["semi-hard", "easy", None, 1])
def test_unknown_mining_lists_valid(bad):
    with pytest.raises(ValueError) as err:
        TripletLoss(mining=bad)
    for name in ("'all'", "'hard'", "'semi_hard'"):
        assert name in str(err.value)


def test_unknown_distance_raises():
    with pytest.raises(ValueError, match="euclidean"):
        TripletLoss(distance_metric_name="l2")


@pytest.mark.parametrize("bad_margin, error", [(-0.1, ValueError), ("0.5", TypeError)])
def test_bad_margin(bad_margin, error):
    with pytest.raises(error, match="margin"):
        TripletLoss(margin=bad_margin)


def test_non_integer_groups_raise_type_error(spec_embeddings):
    with pytest.raises(TypeError, match="groups"):
        TripletLoss()(spec_embeddings, torch.tensor([1.0, 2, 3, 3, 2, 1]))
    with pytest.raises(ValueError, match="groups"):
        TripletLoss()(spec_embeddings, torch.tensor([1, 2, 3]))


# ---------- properties ----------


@settings(max_examples=25, deadline=None)
@given(
    groups=st.lists(st.integers(0, 3), min_size=2, max_size=8),
    seed=st.integers(0, 2**16),
    mining=st.sampled_from(["all", "hard", "semi_hard"]),
    soft=st.booleans(),
    distance=st.sampled_from([Distance.COSINE, Distance.EUCLIDEAN, Distance.MANHATTAN]),
)
def test_properties_finite_nonnegative_permutation_invariant(groups, seed, mining, soft, distance):
    gen = torch.Generator().manual_seed(seed)
    groups = torch.tensor(groups)
    emb = torch.randn(len(groups), 3, generator=gen, dtype=torch.float64)
    loss = TripletLoss(distance_metric_name=distance, mining=mining, soft=soft)
    value = loss(emb, groups)
    assert torch.isfinite(value) and value >= 0
    perm = torch.randperm(len(groups), generator=gen)
    assert_close(loss(emb[perm], groups[perm]), value)


@pytest.mark.parametrize(
    "mining, function",
    [
        ("all", triplet_loss_all),
        ("hard", triplet_loss_batch_hard),
        ("semi_hard", triplet_loss_semi_hard),
    ],
)
def test_module_calls_function(spec_embeddings, spec_groups, mining, function):
    loss = TripletLoss(margin=0.3, distance_metric_name=Distance.MANHATTAN, mining=mining)
    dist = loss.distance_metric.distance_matrix(spec_embeddings)
    expected = function(dist, spec_groups, spec_groups, 0.3)
    assert_close(loss(spec_embeddings, spec_groups), expected)
