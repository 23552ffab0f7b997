import random

import pytest
import torch

from quaterion.dataset.similarity_samples import SimilarityGroupSample
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision
from quaterion.eval.samplers import GroupSampler
from tests.quaterion.eval import _naive


@pytest.mark.parametrize("sample_size, shape", [(-1, (6, 6)), (4, (4, 6)), (100, (6, 6))])
def test_shapes_and_value(group_dataset, model3, sample_size, shape):
    metric = RetrievalRPrecision("euclidean")
    labels, dist = GroupSampler(sample_size=sample_size, log_progress=False).sample(
        group_dataset, metric, model3
    )
    assert labels.shape == dist.shape == shape
    assert metric.raw_compute(dist, labels).item() == 1.0


def test_self_mask_on_the_query_column(seeded, model3):
    data = [
        SimilarityGroupSample(torch.randint(0, 3, (3,)).tolist(), int(g))
        for g in torch.randint(0, 3, (11,))
    ]
    random.seed(5)
    sampler = GroupSampler(sample_size=4, log_progress=False)
    labels, dist = sampler.sample(data, RetrievalRPrecision("manhattan"), model3)
    random.seed(5)
    rows = random.sample(range(11), k=4)
    for i, item in enumerate(rows):
        assert dist[i, item] == dist.max() and labels[i, item] == 0
    full = _naive.group_labels(sampler.accumulator.groups)
    assert torch.equal(labels, full[rows])


def test_full_sampling_equals_compute(seeded, model3):
    data = [
        SimilarityGroupSample(torch.randint(0, 3, (3,)).tolist(), int(g))
        for g in torch.randint(0, 4, (15,))
    ]
    metric = RetrievalRPrecision("manhattan")
    sampler = GroupSampler(sample_size=-1, encode_batch_size=4, log_progress=False)
    labels, dist = sampler.sample(data, metric, model3)
    torch.testing.assert_close(
        metric.raw_compute(dist, labels), metric.compute(**sampler.accumulator.state)
    )


def test_pair_metric_rejected_naming_both_classes(group_dataset, model3):
    with pytest.raises(
        TypeError, match="GroupSampler cannot evaluate RetrievalPrecision.*GroupMetric"
    ):
        GroupSampler(log_progress=False).sample(group_dataset, RetrievalPrecision(), model3)


def test_device_cpu_keeps_accumulated_tensors_on_cpu(group_dataset, model3):
    sampler = GroupSampler(device="cpu", log_progress=False)
    sampler.accumulate(model3, group_dataset)
    assert sampler.accumulator.embeddings.device.type == "cpu"
    assert sampler.accumulator.groups.tolist() == [0, 0, 1, 1, 2, 2]
