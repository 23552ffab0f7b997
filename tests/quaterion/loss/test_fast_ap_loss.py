"""FastAPLoss: spec values, the official formula as a loop, pytorch-metric-learning, properties."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from pytorch_metric_learning.losses import FastAPLoss as PMLFastAPLoss

from quaterion.distances import Distance
from quaterion.loss.fast_ap_loss import FastAPLoss, fast_ap_loss
from tests.quaterion.loss.conftest import E, G
from tests.quaterion.loss._strategies import (
    check_finite_nonnegative_permutation_invariant,
    group_batches,
)


def naive_fast_ap(query, q_groups, ref, r_groups, num_bins):
    """Official FastAP (Cakir et al.): D² = 2 − 2 q̂·r̂, triangular bins, loop per anchor."""
    q = [
        [v / max(math.sqrt(sum(x * x for x in row)), 1e-12) for v in row]
        for row in query.double().tolist()
    ]
    r = [
        [v / max(math.sqrt(sum(x * x for x in row)), 1e-12) for v in row]
        for row in ref.double().tolist()
    ]
    qg, rg = q_groups.tolist(), r_groups.tolist()
    same_batch = torch.equal(q_groups, r_groups)
    delta = 4.0 / num_bins
    aps = []
    for i in range(len(q)):
        h_pos = [0.0] * (num_bins + 1)
        h_neg = [0.0] * (num_bins + 1)
        n_pos = 0
        for j in range(len(r)):
            if same_batch and i == j:
                continue
            d2 = 2 - 2 * sum(a * b for a, b in zip(q[i], r[j]))
            is_pos = qg[i] == rg[j]
            n_pos += is_pos
            for level in range(num_bins + 1):
                pulse = max(1 - abs(d2 - level * delta) / delta, 0.0)
                if is_pos:
                    h_pos[level] += pulse
                else:
                    h_neg[level] += pulse
        if n_pos == 0:
            continue
        ap, cum_pos, cum_all = 0.0, 0.0, 0.0
        for level in range(num_bins + 1):
            cum_pos += h_pos[level]
            cum_all += h_pos[level] + h_neg[level]
            if cum_all > 0:
                ap += h_pos[level] * cum_pos / cum_all
        aps.append(ap / n_pos)
    return 1 - sum(aps) / len(aps) if aps else 0.0


def dense_fast_ap(emb, groups, num_bins):
    """The spec's tensor formula with a (num_bins + 1, B, B) pulse tensor."""
    normed = F.normalize(emb, dim=1)
    d2 = torch.cdist(normed, normed) ** 2
    eye = torch.eye(len(groups), dtype=torch.bool)
    pos = ((groups[:, None] == groups[None, :]) & ~eye).to(emb.dtype)
    neg = (groups[:, None] != groups[None, :]).to(emb.dtype)
    delta = 4 / num_bins
    centres = torch.arange(num_bins + 1, dtype=emb.dtype).view(-1, 1, 1) * delta
    pulse = torch.relu(1 - (d2 - centres).abs() / delta)
    h_pos = (pulse * pos).sum(2).T
    h_neg = (pulse * neg).sum(2).T
    total = (h_pos + h_neg).cumsum(1)
    # 0/0 entries count 0; divide safely so backward has no NaN either
    fast = torch.where(total > 0, h_pos * h_pos.cumsum(1) / torch.where(total > 0, total, 1), 0)
    has_pos = pos.sum(1) > 0
    ap = fast.sum(1)[has_pos] / pos.sum(1)[has_pos]
    return 1 - ap.mean()


def test_spec_values():
    torch.testing.assert_close(FastAPLoss()(E, G), torch.tensor(0.70952), rtol=1e-4, atol=0)
    float_groups = G.float()
    loss = FastAPLoss(5)(E, float_groups)
    torch.testing.assert_close(loss, torch.tensor(0.75293), rtol=1e-4, atol=0)
    official = naive_fast_ap(E, float_groups, E, float_groups, 5)
    torch.testing.assert_close(
        loss.double(), torch.tensor(official, dtype=torch.float64), rtol=1e-5, atol=0
    )


def test_all_distinct_groups_give_attached_zero():
    emb = E.clone().requires_grad_()
    loss = FastAPLoss()(emb, torch.arange(6))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("num_bins", [1, 4, 10, 25])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_official_loop_and_pml(num_bins, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 3, (8,), generator=gen)
    actual = FastAPLoss(num_bins)(emb, groups)
    expected = naive_fast_ap(emb, groups, emb, groups, num_bins)
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(actual, PMLFastAPLoss(num_bins=num_bins)(emb, groups))


def test_values_and_gradients_match_dense_pulse_formula():
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 4])
    ours = base.clone().requires_grad_()
    dense = base.clone().requires_grad_()
    loss = FastAPLoss(7)(ours, groups)
    ref = dense_fast_ap(dense, groups, 7)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(ours.grad, dense.grad)
    assert ours.grad.abs().sum() > 0


def test_query_reference_form_matches_loop():
    gen = torch.Generator().manual_seed(8)
    query = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    ref = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    q_groups, r_groups = torch.tensor([0, 1, 2, 5, 1]), torch.tensor([0, 0, 1, 2, 2, 3, 1])
    d2 = torch.cdist(F.normalize(query, dim=1), F.normalize(ref, dim=1)) ** 2
    actual = fast_ap_loss(d2, q_groups, r_groups, num_bins=6)
    expected = naive_fast_ap(query, q_groups, ref, r_groups, 6)
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64))


def test_backward_finite_for_identical_rows():
    emb = E[:1].repeat(6, 1).requires_grad_()
    loss = FastAPLoss()(emb, G)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()


def test_config_dict_json_and_roundtrip():
    loss = FastAPLoss(num_bins=7)
    config = loss.get_config_dict()
    assert config == {"distance_metric_name": Distance.EUCLIDEAN, "num_bins": 7}
    assert json.loads(json.dumps(config)) == {"distance_metric_name": "euclidean", "num_bins": 7}
    assert FastAPLoss(**config).num_bins == 7
    assert FastAPLoss(**json.loads(json.dumps(config))).distance_metric_name == Distance.EUCLIDEAN


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"num_bins": 0}, ValueError, "num_bins"),
        ({"num_bins": 2.5}, TypeError, "num_bins"),
        ({"num_bins": True}, TypeError, "num_bins"),
        ({"distance_metric_name": Distance.COSINE}, ValueError, "distance_metric_name"),
    ],
)
def test_bad_constructor_values(kwargs, exc, needle):
    with pytest.raises(exc, match=needle):
        FastAPLoss(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="groups"):
        FastAPLoss()(E, G[:5])
    with pytest.raises(TypeError, match="embeddings"):
        FastAPLoss()(E.long(), G)


_batches = group_batches(min_batch=2)


@settings(max_examples=30, deadline=None)
@given(_batches)
def test_properties_bounded_finite_permutation_invariant(batch):
    check_finite_nonnegative_permutation_invariant(
        FastAPLoss(), batch, lower=-1e-9, upper=1 + 1e-9, tol=1e-9
    )
