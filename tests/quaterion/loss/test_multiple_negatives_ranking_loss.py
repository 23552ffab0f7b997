import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import losses
from torch.testing import assert_close

from quaterion.distances import Distance
from quaterion.loss import MultipleNegativesRankingLoss
from quaterion.loss.multiple_negatives_ranking_loss import multiple_negatives_ranking_loss


def naive(emb, pairs, scale, symmetric):
    """Cosine rows in python floats; cross-entropy per anchor by hand."""
    rows = emb.tolist()

    def sim(a, b):
        dot = sum(u * v for u, v in zip(a, b))
        cos = dot / math.sqrt(sum(u * u for u in a) * sum(v * v for v in b))
        return scale * (cos + 1) / 2

    n = len(pairs)
    z = [[sim(rows[pairs[i][0]], rows[pairs[j][1]]) for j in range(n)] for i in range(n)]

    def ce(matrix):
        return (
            sum(-matrix[i][i] + math.log(sum(math.exp(v) for v in matrix[i])) for i in range(n)) / n
        )

    forward = ce(z)
    if not symmetric:
        return forward
    return (forward + ce([list(col) for col in zip(*z)])) / 2


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, 4.29908),
        ({"symmetric": True}, 4.55435),
        ({"scale": 1, "distance_metric_name": Distance.DOT_PRODUCT}, 1.99638),
    ],
)
@pytest.mark.parametrize("labels", [torch.Tensor(), None, torch.ones(3)])
def test_spec_values(spec_embeddings, spec_pairs, kwargs, expected, labels):
    value = MultipleNegativesRankingLoss(**kwargs)(spec_embeddings, spec_pairs, labels, None)
    assert value.shape == ()
    assert value.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop(symmetric, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    pairs = torch.tensor([[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]])
    got = MultipleNegativesRankingLoss(scale=7.0, symmetric=symmetric)(emb, pairs, None, None)
    assert got.item() == pytest.approx(naive(emb, pairs.tolist(), 7.0, symmetric), rel=1e-9)


def test_equals_pml_ntxent_with_reference_embeddings():
    """cosine: Z = scale (cos + 1) / 2; the shift cancels in softmax, so this is NT-Xent with
    temperature 2 / scale where each anchor's candidates are the pairs' second objects."""
    gen = torch.Generator().manual_seed(4)
    anchors = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    positives = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    emb = torch.cat([anchors, positives])
    pairs = torch.stack([torch.arange(6), torch.arange(6, 12)], dim=1)
    labels, ref_labels = torch.arange(6), torch.arange(6)  # PML drops the diagonal if `is`
    pml = losses.NTXentLoss(temperature=2 / 20.0)
    expected = pml(anchors, labels, ref_emb=positives, ref_labels=ref_labels)
    assert_close(MultipleNegativesRankingLoss()(emb, pairs, None, None), expected)
    symmetric = (expected + pml(positives, labels, ref_emb=anchors, ref_labels=ref_labels)) / 2
    assert_close(MultipleNegativesRankingLoss(symmetric=True)(emb, pairs, None, None), symmetric)


@pytest.mark.parametrize("distance", list(Distance))
def test_backward_every_distance(spec_embeddings, spec_pairs, distance):
    for emb in (spec_embeddings.clone(), torch.ones(6, 3)):
        emb.requires_grad_(True)
        value = MultipleNegativesRankingLoss(distance_metric_name=distance)(
            emb, spec_pairs, None, None
        )
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(emb.grad).all()


def test_non_positive_scores_raise(spec_embeddings, spec_pairs):
    with pytest.raises(AssertionError, match="positive pairs"):
        MultipleNegativesRankingLoss()(spec_embeddings, spec_pairs, torch.tensor([1, 0, 1]), None)
    with pytest.raises(ValueError, match="ContrastiveLoss"):
        MultipleNegativesRankingLoss()(spec_embeddings, spec_pairs, torch.tensor([2.0, 0, 1]), None)


def test_config_and_errors():
    config = MultipleNegativesRankingLoss(scale=1.0, symmetric=True).get_config_dict()
    assert config == {"distance_metric_name": "cosine", "scale": 1.0, "symmetric": True}
    assert (
        MultipleNegativesRankingLoss(**json.loads(json.dumps(config))).get_config_dict() == config
    )
    with pytest.raises(ValueError, match="scale"):
        MultipleNegativesRankingLoss(scale=0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**16), symmetric=st.booleans())
def test_properties(n, seed, symmetric):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(2 * n, 3, generator=gen, dtype=torch.float64)
    pairs = torch.stack([torch.arange(n), torch.arange(n, 2 * n)], dim=1)
    loss = MultipleNegativesRankingLoss(symmetric=symmetric)
    value = loss(emb, pairs, torch.ones(n), None)
    assert torch.isfinite(value) and value >= 0
    perm = torch.randperm(n, generator=gen)
    assert_close(loss(emb, pairs[perm], None, None), value)


def test_module_calls_function(spec_embeddings, spec_pairs):
    loss = MultipleNegativesRankingLoss(3.0, Distance.EUCLIDEAN, symmetric=True)
    expected = multiple_negatives_ranking_loss(
        spec_embeddings[spec_pairs[:, 0]],
        spec_embeddings[spec_pairs[:, 1]],
        loss.distance_metric,
        3.0,
        True,
    )
    assert_close(loss(spec_embeddings, spec_pairs, None, None), expected)


def test_the_fit_batch_check_raises_upstreams_error_type():
    # Quaterion.fit checks each batch through check_batch_targets before the loss sees it:
    # code written against the original catches the AssertionError of non-positive pairs
    from quaterion.loss.multiple_negatives_ranking_loss import NonPositivePairsError

    loss = MultipleNegativesRankingLoss()
    with pytest.raises(NonPositivePairsError, match="positive pairs") as raised:
        loss.check_batch_targets({"labels": torch.tensor([1.0, 0.0, 1.0])})
    assert isinstance(raised.value, AssertionError)
    loss.check_batch_targets({"labels": torch.ones(3)})  # positives pass
