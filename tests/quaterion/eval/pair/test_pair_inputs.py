"""Pair indices and scores the pair metrics refuse, and the boundary values they accept."""

import pytest
import torch

from quaterion.dataset.similarity_samples import SimilarityPairSample
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import PairSampler
from tests.quaterion.eval import _naive

E = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
PAIRS = torch.tensor([[0, 2], [1, 3]])
SUBGROUPS = torch.zeros(4)
METRICS = [RetrievalPrecision(1, "manhattan"), RetrievalReciprocalRank("manhattan")]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("pairs", [PAIRS.float(), PAIRS.float() + 0.5, PAIRS.bool()])
def test_non_integer_pairs_are_refused(metric, pairs):
    # upstream truncated nothing (float indices fail in torch); 0.5 would silently become 0
    for call in (metric.compute, metric.step_compute):
        with pytest.raises(TypeError, match="pairs must be an integer tensor"):
            call(E, labels=torch.ones(2), pairs=pairs, subgroups=SUBGROUPS)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("bad", [-1.0, float("inf"), -float("inf")])
def test_negative_or_infinite_scores_are_refused(metric, bad):
    scores = torch.tensor([1.0, bad])
    with pytest.raises(ValueError, match=f"got {bad} for pair 1 .*map a -1 convention to 0.0"):
        metric.compute(E, scores, PAIRS, SUBGROUPS)


@pytest.mark.parametrize("scores", [[0.0, 1.0], [0.5, 2.0], [1.0, 1.0]])
def test_zero_fractional_and_large_scores_match_the_naive_formulas(scores):
    scores = torch.tensor(scores)
    dist, labels = _naive.square_problem(
        E,
        RetrievalPrecision(1, "manhattan").distance,
        lambda n: _naive.pair_labels(scores, PAIRS, n),
    )
    precision = RetrievalPrecision(1, "manhattan", reduce_func=None).compute(
        E, scores, PAIRS, SUBGROUPS
    )
    torch.testing.assert_close(precision, torch.tensor(_naive.precision(dist, labels, 1)))
    ranks = RetrievalReciprocalRank("manhattan", reduce_func=None).compute(
        E, scores, PAIRS, SUBGROUPS
    )
    torch.testing.assert_close(ranks, torch.tensor(_naive.reciprocal_rank(dist, labels)))


def test_evaluator_refuses_a_dataset_with_minus_one_negatives(model3):
    data = [
        SimilarityPairSample(obj_a=[1.0, 0, 0], obj_b=[1.0, 0.1, 0], score=1.0),
        SimilarityPairSample(obj_a=[0.0, 1, 0], obj_b=[0.0, 0, 1], score=-1.0),
    ]
    evaluator = Evaluator(RetrievalReciprocalRank(), PairSampler(log_progress=False))
    with pytest.raises(ValueError, match="got -1.0 for pair 1"):
        evaluator.evaluate(data, model3)


@pytest.mark.parametrize("bad", [-1.0, float("inf")])
@pytest.mark.parametrize("metric", METRICS + [RetrievalRPrecision()])
def test_raw_compute_refuses_negative_or_infinite_labels(metric, bad):
    labels = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, bad]])
    with pytest.raises(
        ValueError, match=r"infinite or negative values in 1 of 3 rows \(first: row 2\)"
    ):
        metric.raw_compute(torch.rand(3, 3), labels)


@pytest.mark.parametrize("make", [RetrievalPrecision, RetrievalReciprocalRank])
def test_reduce_func_must_be_callable(make):
    with pytest.raises(TypeError, match="reduce_func must be a function .* got str 'mean'"):
        make(reduce_func="mean")
    metric = make(distance_metric_name="manhattan", reduce_func=torch.sum)
    values = make(distance_metric_name="manhattan", reduce_func=None).compute(
        E, torch.ones(2), PAIRS, SUBGROUPS
    )
    torch.testing.assert_close(metric.compute(E, torch.ones(2), PAIRS, SUBGROUPS), values.sum())
