"""GroupMetric / PairMetric share one accumulating shell: update forwards, evaluate checks."""

import inspect
import re

import pytest
import torch

from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision


@pytest.mark.parametrize(
    "metric_cls, params",
    [
        (RetrievalRPrecision, ["self", "embeddings", "groups", "device"]),
        (RetrievalPrecision, ["self", "embeddings", "labels", "pairs", "subgroups", "device"]),
    ],
)
def test_update_keeps_the_accumulator_signature(metric_cls, params):
    assert list(inspect.signature(metric_cls.update).parameters) == params
    assert inspect.signature(metric_cls.update).parameters["device"].default is None


def test_update_stores_batches_and_reset_forgets_them():
    metric = RetrievalRPrecision()
    metric.update(torch.ones(2, 3), torch.tensor([1, 2]))
    metric.update(embeddings=torch.zeros(1, 3), groups=torch.tensor([1]), device="cpu")
    assert torch.equal(metric.accumulator.groups, torch.tensor([1, 2, 1]))
    assert metric.accumulator.embeddings.shape == (3, 3)
    metric.reset()
    assert metric.accumulator.embeddings.numel() == 0


@pytest.mark.parametrize(
    "metric, call",
    [
        (RetrievalRPrecision(), "update(embeddings, groups)"),
        (RetrievalPrecision(), "update(embeddings, labels, pairs, subgroups)"),
    ],
)
def test_evaluate_without_data_names_the_update_call(metric, call):
    with pytest.raises(ValueError, match=re.escape(f"Nothing accumulated: call {call} before")):
        metric.evaluate()
