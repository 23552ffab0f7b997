"""Datasets of 0, 1 and 2 items, singletons and one group: the values the evaluation guide
lists, through ``Evaluator`` (sampler path) and ``compute`` (metric path)."""

import math

import pytest
import torch

from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample
from quaterion.eval.evaluator import Evaluator
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import GroupSampler, PairSampler


def groups_of(*ids):
    return [SimilarityGroupSample(obj=[float(i), 1.0, 0.5 * i], group=g) for i, g in enumerate(ids)]


def evaluate_groups(data, model):
    evaluator = Evaluator(RetrievalRPrecision("euclidean"), GroupSampler(log_progress=False))
    return evaluator.evaluate(data, model)["RetrievalRPrecision"]


def evaluate_pairs(data, model, distinguish=False):
    metrics = {
        "p": RetrievalPrecision(1, "euclidean"),
        "rr": RetrievalReciprocalRank("euclidean"),
    }
    sampler = PairSampler(distinguish=distinguish, log_progress=False)
    return Evaluator(metrics, sampler).evaluate(data, model)


@pytest.mark.parametrize("evaluate", [evaluate_groups, evaluate_pairs])
def test_empty_dataset_is_refused(evaluate, model3):
    with pytest.raises(ValueError, match="dataset is empty"):
        evaluate([], model3)


def test_one_object_and_singletons_give_nan_r_precision(model3):
    assert math.isnan(evaluate_groups(groups_of(7), model3))
    assert math.isnan(evaluate_groups(groups_of(1, 2, 3), model3))
    e = torch.tensor([[0.0, 1.0]])
    assert math.isnan(RetrievalRPrecision().compute(e, torch.tensor([4])))


def test_two_objects(model3):
    assert evaluate_groups(groups_of(5, 5), model3).item() == 1.0
    assert math.isnan(evaluate_groups(groups_of(5, 6), model3))


def test_one_group_holding_everything_scores_one(model3):
    assert evaluate_groups(groups_of(*[3] * 6), model3).item() == 1.0


@pytest.mark.parametrize("distinguish", [False, True])
def test_a_single_pair(model3, distinguish):
    data = [SimilarityPairSample(obj_a=[1.0, 0, 0], obj_b=[0.0, 1, 0], score=1.0)]
    assert evaluate_pairs(data, model3, distinguish) == {"p": 1.0, "rr": 1.0}
    k2 = Evaluator(RetrievalPrecision(2), PairSampler(distinguish=distinguish, log_progress=False))
    if distinguish:  # one candidate per query: the partner
        with pytest.raises(
            ValueError, match="k=2 is larger than the number of candidates per query .1."
        ):
            k2.evaluate(data, model3)
    else:  # the partner, then the object itself (ranked last, never relevant)
        assert k2.evaluate(data, model3)["RetrievalPrecision"].item() == 0.5
    data[0].score = 0.0
    result = evaluate_pairs(data, model3, distinguish)
    assert result["p"].item() == 0.0 and math.isnan(result["rr"])
