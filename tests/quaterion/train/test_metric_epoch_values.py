"""Epoch values of attached metrics leave out the batches where the metric is undefined."""

import pytest
import torch

from quaterion import Quaterion
from quaterion.dataset import SimilarityGroupSample
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from tests.quaterion.train.helpers import (
    IN_DIM,
    ValidationRecordingModel,
    epoch_mean_of_defined_batches,
    group_loader,
    group_samples,
    naive_r_precision_counts,
    trainer,
)

# validation batches of 4: batch 1 holds four singleton groups, so no query has a relevant item
VAL_GROUPS = [0, 0, 1, 1, 2, 3, 4, 5, 6, 6, 6, 7]


def fit_with_groups(val_groups, **log_options):
    generator = torch.Generator().manual_seed(3)
    samples = [
        SimilarityGroupSample(obj=torch.randn(IN_DIM, generator=generator), group=group)
        for group in val_groups
    ]
    metric = AttachedMetric("rrp", RetrievalRPrecision(), on_epoch=True, **log_options)
    model = ValidationRecordingModel(metrics=[metric])
    fit_trainer = trainer(max_epochs=1)
    val = group_loader(samples, batch_size=4)
    Quaterion.fit(model, fit_trainer, group_loader(group_samples(16)), val)
    return model, fit_trainer.callback_metrics["rrp_validation"]


def test_undefined_batches_are_left_out_of_the_epoch_mean():
    model, logged = fit_with_groups(VAL_GROUPS)
    counts = [naive_r_precision_counts(e, g) for e, g in model.batches]
    assert [positions > 0 for _, positions in counts] == [True, False, True]
    assert not torch.isnan(logged)
    assert logged.item() == pytest.approx(epoch_mean_of_defined_batches(model.batches), abs=1e-6)


def test_an_epoch_without_any_defined_batch_is_nan():
    _, logged = fit_with_groups(list(range(12)))
    assert torch.isnan(logged)


def test_max_reduction_ignores_undefined_batches():
    model, logged = fit_with_groups(VAL_GROUPS, reduce_fx="max")
    counts = [naive_r_precision_counts(e, g) for e, g in model.batches]
    expected = max(hits / positions for hits, positions in counts if positions)
    assert logged.item() == pytest.approx(expected, abs=1e-6)


def test_batch_value_keeps_defined_values_and_weights_undefined_ones_zero():
    metric = AttachedMetric("rrp", RetrievalRPrecision())
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    value, weight = metric.batch_value(embeddings, {"groups": torch.tensor([1, 1, 2])})
    assert (value.item(), int(weight)) == (1.0, 3)
    value, weight = metric.batch_value(embeddings, {"groups": torch.tensor([1, 2, 3])})
    assert (value.item(), int(weight)) == (0.0, 0)
    # compute itself keeps the spec's NaN for a batch without any relevant item
    assert torch.isnan(RetrievalRPrecision().compute(embeddings, torch.tensor([1, 2, 3])))


def test_reciprocal_rank_of_a_batch_of_score_zero_pairs_is_left_out():
    from quaterion.eval.pair import RetrievalReciprocalRank

    metric = AttachedMetric("rrk", RetrievalReciprocalRank(), reduce_fx="min")
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.2], [0.1, 1.0]])
    targets = {"pairs": torch.tensor([[0, 2], [1, 3]]), "subgroups": torch.zeros(4)}
    # every partner is its query's nearest object: reciprocal rank 1 for each of 4 queries
    value, weight = metric.batch_value(embeddings, {**targets, "labels": torch.ones(2)})
    assert (value.item(), int(weight)) == (1.0, 4)
    # score-0 pairs: no query has a relevant object; "min" gets its neutral element
    value, weight = metric.batch_value(embeddings, {**targets, "labels": torch.zeros(2)})
    assert (value.item(), int(weight)) == (float("inf"), 0)
