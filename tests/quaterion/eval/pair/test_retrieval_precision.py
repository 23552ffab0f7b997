import pytest
import torch

from quaterion.distances import Distance
from quaterion.eval.pair import RetrievalPrecision, retrieval_precision
from tests.quaterion.eval import _naive
from tests.quaterion.eval.conftest import tied_embeddings

E = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
PAIRS = torch.tensor([[0, 2], [1, 3]])
SCORES = torch.tensor([1.0, 1.0])
SUBGROUPS = torch.zeros(4)


def test_worked_values():
    at1 = RetrievalPrecision(1, Distance.MANHATTAN, reduce_func=None)
    at2 = RetrievalPrecision(2, "manhattan", reduce_func=None)
    assert at1.compute(E, SCORES, PAIRS, SUBGROUPS).tolist() == [1, 1, 0, 1]
    assert at2.compute(E, SCORES, PAIRS, SUBGROUPS).tolist() == [0.5, 0.5, 0.5, 0.5]
    mean = RetrievalPrecision(1, "manhattan").compute(E, SCORES, PAIRS, SUBGROUPS)
    assert mean.dim() == 0 and mean.item() == pytest.approx(0.75)


@pytest.mark.parametrize(
    "points, expected",
    [([[1, 1], [8, 8], [2, 2], [6, 6]], 1.0), ([[1, 1], [2, 2], [8, 8], [6, 6]], 0.0)],
)
def test_worked_separations(points, expected):
    value = RetrievalPrecision(1, "manhattan", reduce_func=None).compute(
        torch.tensor(points, dtype=torch.float32), SCORES, PAIRS, SUBGROUPS
    )
    assert value.tolist() == [expected] * 4


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_raises(k):
    with pytest.raises(ValueError, match="k must be greater than 0"):
        RetrievalPrecision(k=k)


def test_k_not_int_raises():
    with pytest.raises(TypeError, match="k must be an int"):
        RetrievalPrecision(k=1.5)


def test_k_above_candidates_raises():
    with pytest.raises(
        ValueError, match=r"k=5 is larger than the number of candidates per query \(4\)"
    ):
        RetrievalPrecision(k=5, distance_metric_name="manhattan").compute(
            E, SCORES, PAIRS, SUBGROUPS
        )


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_function_equals_naive_with_ties_for_any_block(seeded, set_chunk_rows, k):
    dist = torch.randint(0, 4, (12, 12)).float()
    labels = torch.randint(0, 3, (12, 12)).float() / 2  # 0, 0.5, 1
    labels[3] = 0  # a row without relevant items
    expected = torch.tensor(_naive.precision(dist, labels, k), dtype=torch.float32)
    for block_size in (1, 3, 12, None):
        actual = retrieval_precision(dist, labels, k, block_size=block_size)
        torch.testing.assert_close(actual, expected)
    set_chunk_rows(2, 12)  # exact-tie path in chunks of 2 rows
    torch.testing.assert_close(retrieval_precision(dist, labels, k), expected)


@pytest.mark.parametrize("distance", list(Distance))
def test_compute_equals_naive_square_problem(seeded, set_block_rows, distance):
    embeddings = tied_embeddings(10)
    pairs = torch.tensor([[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]])
    scores = torch.tensor([1.0, 0.5, 0.0, 1.0, 1.0])
    metric = RetrievalPrecision(3, distance, reduce_func=None)
    dist, labels = _naive.square_problem(
        embeddings, metric.distance, lambda n: _naive.pair_labels(scores, pairs, n)
    )
    expected = torch.tensor(_naive.precision(dist, labels, 3), dtype=torch.float32)
    for rows in (1, 3, 10):
        set_block_rows(rows, 10)
        torch.testing.assert_close(
            metric.compute(embeddings, scores, pairs, torch.zeros(10)), expected
        )


def test_raw_compute_reduces(seeded):
    dist, labels = torch.rand(6, 6), (torch.rand(6, 6) > 0.5).float()
    metric = RetrievalPrecision(2, reduce_func=torch.sum)
    torch.testing.assert_close(
        metric.raw_compute(dist, labels), torch.tensor(sum(_naive.precision(dist, labels, 2)))
    )


def test_well_separated_pairs_score_higher(seeded):
    centers = torch.randn(20, 8) * 10
    separated = torch.cat([centers, centers + 0.01 * torch.randn(20, 8)])
    random_points = torch.randn(40, 8)
    pairs = torch.stack([torch.arange(20), torch.arange(20) + 20], dim=1)
    metric = RetrievalPrecision(1)
    good = metric.compute(separated, torch.ones(20), pairs, torch.zeros(40))
    bad = metric.compute(random_points, torch.ones(20), pairs, torch.zeros(40))
    assert good.item() == 1.0 and bad.item() < good.item()
