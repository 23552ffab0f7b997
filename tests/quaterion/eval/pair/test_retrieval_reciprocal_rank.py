import pytest
import torch

from quaterion.distances import Distance
from quaterion.dataset.similarity_samples import SimilarityPairSample
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.pair import retrieval_reciprocal_rank
from quaterion.eval.samplers.pair_sampler import PairSampler
from tests.quaterion.eval import _naive
from tests.quaterion.eval.conftest import identity_model, tied_embeddings

PAIRS = torch.tensor([[0, 2], [1, 3]])
SCORES = torch.tensor([1.0, 1.0])
SUBGROUPS = torch.zeros(4)


def test_worked_values():
    embeddings = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
    per_row = RetrievalReciprocalRank(Distance.MANHATTAN, reduce_func=None)
    assert per_row.compute(embeddings, SCORES, PAIRS, SUBGROUPS).tolist() == [1, 1, 0.5, 1]
    mean = RetrievalReciprocalRank("manhattan").compute(embeddings, SCORES, PAIRS, SUBGROUPS)
    assert mean.item() == pytest.approx(0.875)


def test_partner_third_in_every_row():
    embeddings = torch.tensor([[3.0, -1], [2, -3], [0, -3], [0, -1]])
    value = RetrievalReciprocalRank("manhattan", reduce_func=None).compute(
        embeddings, SCORES, PAIRS, SUBGROUPS
    )
    torch.testing.assert_close(value, torch.full((4,), 1 / 3))


@pytest.mark.parametrize("metric", [RetrievalReciprocalRank(), RetrievalPrecision(k=1)])
def test_a_nan_pair_score_is_an_error_not_a_relevant_item(metric):
    """``step_compute`` turns NaN scores into a NaN metric; ``compute`` (which may read
    values on the host) must say so rather than rank NaN as relevant."""
    embeddings = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
    scores = torch.tensor([float("nan"), 1.0])
    with pytest.raises(ValueError, match="NaN in 1 of 2 pair scores"):
        metric.compute(embeddings, scores, PAIRS, SUBGROUPS)
    step = metric.step_compute(embeddings, labels=scores, pairs=PAIRS, subgroups=SUBGROUPS)
    assert torch.isnan(step).all()
    data = [
        SimilarityPairSample(obj_a=[1.0, 1.0], obj_b=[4.0, 4.0], score=float("nan")),
        SimilarityPairSample(obj_a=[8.0, 8.0], obj_b=[6.0, 7.0], score=1.0),
    ]
    with pytest.raises(ValueError, match="score=nan"):  # checked when the batch is collated
        Evaluator(metric, PairSampler(log_progress=False)).evaluate(data, identity_model(2))


def test_one_value_per_incidence_in_rank_order():
    dist = torch.tensor([[9.0, 3, 1, 2], [1, 9, 2, 3], [1, 2, 9, 3]])
    labels = torch.tensor([[0.0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 1]])
    # row 0: col 2 (rank 1), col 3 (rank 2, relevant), col 1 (rank 3, relevant); row 1: none
    assert retrieval_reciprocal_rank(dist, labels).tolist() == pytest.approx(
        [1 / 2, 1 / 3, 1, 1 / 3]
    )


def test_function_equals_naive_with_ties_for_any_block(seeded, set_chunk_rows):
    dist = torch.randint(0, 4, (12, 12)).float()
    labels = (torch.rand(12, 12) > 0.6).float() * torch.randint(1, 3, (12, 12))
    labels[5] = 0
    labels[7] = 1  # a row where every item is relevant (sorted ranking path)
    expected = torch.tensor(_naive.reciprocal_rank(dist, labels), dtype=torch.float32)
    for block_size in (1, 3, 12, None):
        torch.testing.assert_close(
            retrieval_reciprocal_rank(dist, labels, block_size=block_size), expected
        )
    set_chunk_rows(2, 12)  # tie and sort paths in chunks of 2 rows
    torch.testing.assert_close(retrieval_reciprocal_rank(dist, labels), expected)


@pytest.mark.parametrize("distance", list(Distance))
def test_compute_equals_naive_square_problem(seeded, set_block_rows, distance):
    embeddings = tied_embeddings(12)
    pairs = torch.tensor([[0, 6], [1, 7], [2, 8], [3, 9], [4, 10], [5, 11]])
    scores = torch.tensor([1.0, 0.5, 0.0, 1.0, 1.0, 1.0])
    metric = RetrievalReciprocalRank(distance, reduce_func=None)
    dist, labels = _naive.square_problem(
        embeddings, metric.distance, lambda n: _naive.pair_labels(scores, pairs, n)
    )
    expected = torch.tensor(_naive.reciprocal_rank(dist, labels), dtype=torch.float32)
    for rows in (1, 3, 12):
        set_block_rows(rows, 12)
        torch.testing.assert_close(
            metric.compute(embeddings, scores, pairs, torch.zeros(12)), expected
        )


def test_rows_without_relevant_items_contribute_nothing():
    embeddings = torch.tensor([[0.0, 1], [0, 2], [5, 5], [5, 6]])
    value = RetrievalReciprocalRank("euclidean", reduce_func=None).compute(
        embeddings, torch.tensor([1.0, 0.0]), torch.tensor([[0, 1], [2, 3]]), SUBGROUPS
    )
    assert value.tolist() == [1.0, 1.0]


def test_well_separated_pairs_score_higher(seeded):
    centers = torch.randn(20, 8) * 10
    separated = torch.cat([centers, centers + 0.01 * torch.randn(20, 8)])
    pairs = torch.stack([torch.arange(20), torch.arange(20) + 20], dim=1)
    metric = RetrievalReciprocalRank()
    good = metric.compute(separated, torch.ones(20), pairs, torch.zeros(40))
    bad = metric.compute(torch.randn(40, 8), torch.ones(20), pairs, torch.zeros(40))
    assert good.item() == 1.0 and bad.item() < 1.0


@pytest.mark.parametrize("distance", list(Distance))
def test_blocked_compute_equals_dense_precompute_path(seeded, set_block_rows, distance):
    # float data: blocks and the full matrix may round differently (BLAS): tight tolerance
    embeddings = torch.randn(30, 5)
    pairs = torch.stack([torch.arange(15), torch.arange(15) + 15], dim=1)
    scores = torch.ones(15)
    metric = RetrievalReciprocalRank(distance, reduce_func=None)
    labels, dist = metric.precompute(
        embeddings, labels=scores, pairs=pairs, subgroups=torch.zeros(30)
    )
    expected = metric.raw_compute(dist, labels)
    set_block_rows(4, 30)
    got = metric.compute(embeddings, scores, pairs, torch.zeros(30))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
