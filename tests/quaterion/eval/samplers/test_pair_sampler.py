import random

import pytest
import torch

from quaterion.dataset.similarity_samples import SimilarityPairSample
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.eval.samplers import PairSampler
from tests.quaterion.eval import _naive


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({}, (8, 8)),
        ({"sample_size": 4}, (4, 8)),
        ({"distinguish": True}, (4, 4)),
        ({"distinguish": True, "sample_size": 4}, (4, 4)),
    ],
)
def test_shapes_and_reciprocal_rank(pair_dataset, model3, kwargs, shape):
    sampler = PairSampler(log_progress=False, **kwargs)
    metric = RetrievalReciprocalRank("euclidean")  # the vectors share one direction
    labels, dist = sampler.sample(pair_dataset, metric, model3)
    assert labels.shape == dist.shape == shape
    assert metric.raw_compute(dist, labels).item() == 1.0


def test_plain_rows_follow_drawn_items(pair_dataset, model3):
    random.seed(3)
    sampler = PairSampler(sample_size=5, log_progress=False)
    labels, dist = sampler.sample(pair_dataset, RetrievalPrecision(), model3)
    random.seed(3)
    rows = random.sample(range(8), k=5)
    emb = sampler.accumulator.embeddings
    full_labels = _naive.pair_labels(sampler.accumulator.labels, sampler.accumulator.pairs, 8)
    expected = RetrievalPrecision().distance.distance_matrix(emb[rows], emb)
    top = float("inf")
    for i, item in enumerate(rows):
        expected[i, item] = top
    torch.testing.assert_close(dist, expected)
    assert torch.equal(labels, full_labels[rows])


def test_distinguish_over_several_accumulate_batches(model3):
    # 6 pairs, 2 pairs per encode batch: pair j's obj_a is no longer row j (the row fix)
    data = [SimilarityPairSample([10.0 * j] * 3, [10.0 * j + 1] * 3, 1.0, 0) for j in range(6)]
    sampler = PairSampler(distinguish=True, encode_batch_size=4, log_progress=False)
    metric = RetrievalReciprocalRank("euclidean")
    labels, dist = sampler.sample(data, metric, model3)
    assert labels.shape == (6, 6) and metric.raw_compute(dist, labels).item() == 1.0
    assert labels.sum().item() == 6


def test_full_sampling_equals_compute_on_all_items(seeded, model3):
    data = [
        SimilarityPairSample(
            torch.randint(0, 3, (3,)).tolist(),
            torch.randint(0, 3, (3,)).tolist(),
            float(torch.randint(0, 3, ()).item()) / 2,
            0,
        )
        for _ in range(7)
    ]
    sampler = PairSampler(log_progress=False)
    for metric in (RetrievalPrecision(2, "manhattan"), RetrievalReciprocalRank("manhattan")):
        labels, dist = sampler.sample(data, metric, model3)
        state = sampler.accumulator.state
        expected = metric.compute(**state)
        torch.testing.assert_close(metric.raw_compute(dist, labels), expected)


def test_group_metric_rejected_naming_both_classes(pair_dataset, model3):
    with pytest.raises(
        TypeError, match="PairSampler cannot evaluate RetrievalRPrecision.*PairMetric"
    ):
        PairSampler(log_progress=False).sample(pair_dataset, RetrievalRPrecision(), model3)


def test_encode_batch_size_below_two_raises():
    with pytest.raises(ValueError, match="encode_batch_size must be an int >= 2, got 1"):
        PairSampler(encode_batch_size=1)


def test_filled_accumulator_reused_until_reset(pair_dataset, model3):
    sampler = PairSampler(log_progress=False)
    sampler.sample(pair_dataset, RetrievalPrecision(), model3)
    assert sampler.accumulator.filled
    labels, _ = sampler.sample(pair_dataset[:2], RetrievalPrecision(), model3)
    assert labels.shape == (8, 8)
    sampler.reset()
    assert not sampler.accumulator.filled


def test_seeded_draws_are_reproducible(pair_dataset, model3):
    sampler = PairSampler(sample_size=3, log_progress=False)
    results = []
    for _ in range(2):
        random.seed(11)
        results.append(sampler.sample(pair_dataset, RetrievalPrecision(), model3)[1])
    assert torch.equal(results[0], results[1])


def test_nan_embeddings_and_empty_dataset_raise(model3):
    data = [
        SimilarityPairSample([float("nan")] * 3, [1.0] * 3, 1.0, 0),
        SimilarityPairSample([2.0] * 3, [1.0] * 3, 1.0, 0),
    ]
    with pytest.raises(ValueError, match="NaN or inf in 1 of 4 rows"):
        PairSampler(log_progress=False).sample(data, RetrievalPrecision(), model3)
    with pytest.raises(ValueError, match="dataset is empty"):
        PairSampler(log_progress=False).sample([], RetrievalPrecision(), model3)
