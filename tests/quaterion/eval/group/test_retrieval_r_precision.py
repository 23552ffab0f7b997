import math

import pytest
import torch

from quaterion.distances import Distance
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.group.retrieval_r_precision import retrieval_r_precision
from tests.quaterion.eval import _naive
from tests.quaterion.eval.conftest import tied_embeddings

E = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
GROUPS = torch.tensor([1, 2, 1, 2])


def test_worked_value_compute_and_evaluate():
    metric = RetrievalRPrecision(Distance.MANHATTAN)
    assert metric.compute(E, GROUPS).item() == pytest.approx(0.75)
    metric.update(E[:2], torch.tensor([1, 2]))
    metric.update(E[2:], torch.tensor([1, 2]))
    assert metric.evaluate().item() == pytest.approx(0.75)
    metric.reset()
    with pytest.raises(ValueError, match="Nothing accumulated"):
        metric.evaluate()


@pytest.mark.parametrize(
    "points, expected",
    [([[1, 1], [8, 8], [2, 2], [6, 6]], 1.0), ([[1, 1], [2, 2], [8, 8], [6, 6]], 0.0)],
)
def test_worked_separations(points, expected):
    value = RetrievalRPrecision("manhattan").compute(
        torch.tensor(points, dtype=torch.float32), GROUPS
    )
    assert value.item() == expected


def test_function_is_micro_average_equal_to_naive_for_any_block(seeded, set_chunk_rows):
    dist = torch.randint(0, 4, (14, 14)).float()
    labels = (torch.rand(14, 14) > 0.6).float()
    labels[2] = 0
    labels[9] = 1
    expected = torch.tensor(_naive.r_precision(dist, labels), dtype=torch.float32)
    for block_size in (1, 3, 14, None):
        torch.testing.assert_close(
            retrieval_r_precision(dist, labels, block_size=block_size), expected
        )
    set_chunk_rows(2, 14)  # exact-tie path in chunks of 2 rows
    torch.testing.assert_close(retrieval_r_precision(dist, labels), expected)


def test_micro_average_differs_from_mean_of_ratios():
    dist = torch.tensor([[9.0, 1, 2, 3], [1, 9, 2, 3]])
    labels = torch.tensor([[0.0, 1, 0, 1], [1, 0, 0, 0]])
    # row 0: R=2, first two are cols 1 (rel), 2 -> r=1; row 1: R=1, first col 0 (rel) -> r=1
    assert retrieval_r_precision(dist, labels).item() == pytest.approx(2 / 3)


def test_no_relevant_items_gives_nan():
    assert math.isnan(retrieval_r_precision(torch.rand(3, 3), torch.zeros(3, 3)).item())


@pytest.mark.parametrize("distance", list(Distance))
def test_compute_equals_naive_square_problem(seeded, set_block_rows, distance):
    embeddings = tied_embeddings(13)
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 5])  # singletons 3 and 5
    metric = RetrievalRPrecision(distance)
    dist, labels = _naive.square_problem(
        embeddings, metric.distance, lambda n: _naive.group_labels(groups)
    )
    expected = torch.tensor(_naive.r_precision(dist, labels), dtype=torch.float32)
    for rows in (1, 3, 13):
        set_block_rows(rows, 13)
        torch.testing.assert_close(metric.compute(embeddings, groups), expected)


@pytest.mark.parametrize("distance", list(Distance))
def test_blocked_compute_equals_dense_precompute_path(seeded, set_block_rows, distance):
    embeddings, groups = torch.randn(30, 4), torch.randint(0, 6, (30,))
    metric = RetrievalRPrecision(distance)
    labels, dist = metric.precompute(embeddings, groups=groups)
    expected = metric.raw_compute(dist, labels)
    set_block_rows(4, 30)
    # blocks and the full matrix may round differently (BLAS): tight tolerance, not bits
    torch.testing.assert_close(metric.compute(embeddings, groups), expected, rtol=1e-6, atol=1e-6)


def test_well_separated_groups_score_higher(seeded):
    groups = torch.arange(10).repeat_interleave(4)
    separated = torch.randn(10, 8)[groups] * 10 + 0.01 * torch.randn(40, 8)
    metric = RetrievalRPrecision()
    good = metric.compute(separated, groups)
    bad = metric.compute(torch.randn(40, 8), groups)
    assert good.item() == 1.0 and bad.item() < good.item()


def test_nan_embeddings_raise_with_row_count():
    embeddings = torch.randn(5, 3)
    embeddings[1, 0] = embeddings[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf in 2 of 5 rows"):
        RetrievalRPrecision().compute(embeddings, torch.tensor([0, 0, 1, 1, 2]))


@pytest.mark.parametrize("which", ["distance_matrix", "labels"])
def test_raw_compute_refuses_nan_matrices(which):
    """A NaN distance would rank last and a NaN label count as relevant: a value that means
    nothing, so ``raw_compute`` says where it is. ``+inf`` distances (self-pairs) stay valid."""
    from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank

    dist = torch.tensor([[float("inf"), 1.0, 2.0], [1.0, float("inf"), 3.0]])
    labels = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    assert RetrievalRPrecision().raw_compute(dist, labels).item() == pytest.approx(2 / 3)
    broken = {"distance_matrix": dist.clone(), "labels": labels.clone()}
    broken[which][1, 2] = float("nan")
    metrics = [RetrievalRPrecision(), RetrievalPrecision(k=1), RetrievalReciprocalRank()]
    for metric in metrics:
        with pytest.raises(ValueError, match=f"{which} contains NaN in 1 of 2 rows"):
            metric.raw_compute(broken["distance_matrix"], broken["labels"])
