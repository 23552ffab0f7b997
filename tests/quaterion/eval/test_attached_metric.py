import copy
import pickle

import pytest
import torch

from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.utils.enums import TrainStage


def make():
    return AttachedMetric(
        "rp", RetrievalPrecision(k=2), prog_bar=True, on_epoch=True, on_prog_bar=True
    )


def test_defaults_and_log_options():
    attached = make()
    assert attached.stages == [TrainStage.TRAIN, TrainStage.VALIDATION]
    assert attached.log_options == {
        "logger": True,
        "prog_bar": True,
        "on_step": None,
        "on_epoch": True,
        "on_prog_bar": True,
    }


def test_delegates_to_wrapped_metric():
    attached = make()
    embeddings = torch.tensor([[0.0, 1], [5, 5], [0, 1.1], [5, 5.1]])
    pairs, scores = torch.tensor([[0, 2], [1, 3]]), torch.ones(2)
    assert attached.k == 2 and attached.accumulator is attached._metric.accumulator
    expected = RetrievalPrecision(k=2).compute(embeddings, scores, pairs, torch.zeros(4))
    assert attached.compute(embeddings, scores, pairs, torch.zeros(4)) == expected
    attached.update(embeddings, scores, pairs, torch.zeros(4))
    assert attached.accumulator.embeddings.shape == (4, 2)
    attached.reset()
    assert attached.accumulator.embeddings.numel() == 0


def test_missing_attribute_message():
    with pytest.raises(AttributeError) as info:
        _ = make().nonexistent
    assert str(info.value) == "`AttachedMetric` object (<rp>) has no attribute <nonexistent>"
    assert isinstance(info.value.__cause__, AttributeError)


@pytest.mark.parametrize(
    "clone", [copy.copy, copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))]
)
def test_copies_keep_k_and_log_options(clone):
    original = make()
    copied = clone(original)
    assert copied.k == 2 and copied.log_options == original.log_options and copied.name == "rp"


def test_half_built_object_does_not_recurse():
    bare = AttachedMetric.__new__(AttachedMetric)
    with pytest.raises(AttributeError):
        _ = bare._metric
    with pytest.raises(AttributeError):
        _ = bare.name


@pytest.mark.parametrize(
    "metric", [RetrievalPrecision(reduce_func=None), RetrievalReciprocalRank(reduce_func=None)]
)
def test_per_query_vector_metric_is_refused(metric):
    # Lightning's self.log would fail mid-fit on the vector; refuse at configuration time
    with pytest.raises(ValueError, match=r"logs one number per batch.*reduce_func=None"):
        AttachedMetric("v", metric)


@pytest.mark.parametrize("metric", [RetrievalPrecision, torch.mean, None])
def test_non_metric_is_refused(metric):
    with pytest.raises(TypeError, match="needs a BaseMetric"):
        AttachedMetric("m", metric)
