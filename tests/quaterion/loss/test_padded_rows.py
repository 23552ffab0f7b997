"""Every gathering loss over rows padded as ``gather_rows_padded`` pads them (each rank's
rows, then zero rows up to one capacity) with the mask of the real rows equals the same
loss over the real rows alone, in value and in the gradient of every real row; padded
rows get no gradient. No host sync is taken by the masked computation."""

from functools import partial

import pytest
import torch
from torch.testing import assert_close

from quaterion.distances import Distance
from quaterion.loss import (
    ArcFaceLoss,
    CenterLoss,
    CircleLoss,
    CosFaceLoss,
    FastAPLoss,
    OnlineContrastiveLoss,
    SoftmaxLoss,
    TripletLoss,
)
from quaterion.loss._valid_rows import real_mean
from quaterion.loss.circle_loss import circle_loss
from quaterion.loss.fast_ap_loss import fast_ap_loss
from quaterion.loss.multiple_negatives_ranking_loss import multiple_negatives_ranking_loss
from quaterion.loss.online_contrastive_loss import (
    online_contrastive_loss_all,
    online_contrastive_loss_hard,
)
from quaterion.loss.triplet_loss import (
    triplet_loss_all,
    triplet_loss_batch_hard,
    triplet_loss_semi_hard,
)
from quaterion.utils.testing import count_host_syncs

CAPACITY = 5
DIM = 4
NUM_GROUPS = 3


def padded_layout(sizes, seed=0):
    """Real rows of ``len(sizes)`` ranks and their padded form: ``(real, groups, padded,
    padded_groups, valid, where)``; ``where`` maps each real row to its padded row."""
    generator = torch.Generator().manual_seed(seed)
    total = sum(sizes)
    real = torch.randn(total, DIM, generator=generator, dtype=torch.float64)
    groups = torch.randint(0, NUM_GROUPS, (total,), generator=generator)
    where = torch.cat([torch.arange(n) + rank * CAPACITY for rank, n in enumerate(sizes)]).long()
    slots = len(sizes) * CAPACITY
    padded_groups = torch.zeros(slots, dtype=torch.long)  # padding is zeros: group 0
    padded_groups[where] = groups
    valid = torch.zeros(slots, dtype=torch.bool)
    valid[where] = True
    return real, groups, where, slots, valid, padded_groups


def compare(loss_fn, sizes, seed=0, tol=1e-12):
    """``loss_fn(rows, groups, valid)`` on padded rows vs ``loss_fn(rows, groups, None)`` on
    the real rows: value, gradients of the real rows, zero gradient of the padding."""
    real, groups, where, slots, valid, padded_groups = padded_layout(sizes, seed)
    real.requires_grad_()
    expected = loss_fn(real, groups, None)
    expected.backward()
    padded = torch.zeros(slots, DIM, dtype=torch.float64)
    padded[where] = real.detach()
    padded.requires_grad_()
    with count_host_syncs() as syncs:
        got = loss_fn(padded, padded_groups, valid)
    got.backward()
    assert syncs.total == 0, syncs.by_op
    assert expected.abs() > 0, "degenerate case"
    assert_close(got, expected, rtol=tol, atol=tol)
    assert_close(padded.grad[where], real.grad, rtol=1e-10, atol=1e-12)
    assert_close(padded.grad[~valid], torch.zeros_like(padded.grad[~valid]), rtol=0, atol=0)


def _matrix(strategy, distance, margin=0.5, **kwargs):
    def run(rows, groups, valid):
        dist = distance.distance_matrix(rows)
        if valid is None:
            return strategy(dist, groups, groups, margin, **kwargs)
        return strategy(dist, groups, groups, margin, valid=(valid, valid), **kwargs)

    return run


COSINE = TripletLoss().distance_metric
EUCLIDEAN = TripletLoss(distance_metric_name=Distance.EUCLIDEAN).distance_metric
DOT = TripletLoss(distance_metric_name=Distance.DOT_PRODUCT).distance_metric

STRATEGIES = {
    "triplet_all": _matrix(triplet_loss_all, COSINE),
    "triplet_hard": _matrix(triplet_loss_batch_hard, COSINE),
    "triplet_hard_dot": _matrix(triplet_loss_batch_hard, DOT, margin=5.0),
    "triplet_soft_euclidean": _matrix(triplet_loss_batch_hard, EUCLIDEAN, soft=True),
    "triplet_semi_hard": _matrix(triplet_loss_semi_hard, COSINE),
    "online_contrastive_all": _matrix(online_contrastive_loss_all, EUCLIDEAN, margin=2.0),
    "online_contrastive_hard": _matrix(online_contrastive_loss_hard, COSINE),
    "circle": lambda rows, groups, valid: circle_loss(
        COSINE.similarity_matrix(rows), groups, scale_factor=8.0, valid=valid
    ),
    "fast_ap": lambda rows, groups, valid: fast_ap_loss(
        EUCLIDEAN.distance_matrix(torch.nn.functional.normalize(rows, dim=1)) ** 2,
        groups,
        valid=valid,
    ),
}

# (rows per rank): unequal, one rank empty, every rank full (nothing padded)
SIZES = [(5, 3), (0, 4), (2, 5, 1), (5, 5)]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_mined_losses_leave_padded_rows_out(name, sizes):
    for seed in range(3):
        compare(STRATEGIES[name], sizes, seed)


def _classifier(cls, **kwargs):
    torch.manual_seed(3)
    loss = cls(DIM, NUM_GROUPS, **kwargs).to(torch.float64)

    def run(rows, groups, valid):
        return loss._loss(rows, groups) if valid is None else loss._loss(rows, groups, valid)

    return run


CLASSIFIERS = {
    "softmax": partial(_classifier, SoftmaxLoss),
    "arcface": partial(_classifier, ArcFaceLoss, scale=8.0),
    "cosface": partial(_classifier, CosFaceLoss, scale=8.0),
    "center": partial(_classifier, CenterLoss),
}


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_losses_average_over_real_rows_only(name, sizes):
    compare(CLASSIFIERS[name](), sizes)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("sizes", SIZES)
def test_mnrl_ranks_real_pairs_against_real_positives_only(symmetric, sizes):
    # rows 2k / 2k+1 of the helper's layout would mix ranks: anchors and positives are
    # two padded tensors with the same mask, as gather_rows_padded returns them
    def run(rows, groups, valid):
        positives = torch.tanh(rows.flip(1)) + rows  # a second, differentiable view
        return multiple_negatives_ranking_loss(
            rows, positives, COSINE, scale=5.0, symmetric=symmetric, valid=valid
        )

    compare(run, sizes)


@pytest.mark.parametrize("mining", ["hard", "semi_hard"])
def test_xbm_memory_term_leaves_padded_batch_and_memory_rows_out(mining):
    loss = TripletLoss(mining=mining)
    real, groups, where, slots, valid, padded_groups = padded_layout((4, 2), seed=5)
    memory, memory_groups, m_where, m_slots, m_valid, m_padded_groups = padded_layout(
        (5, 1), seed=6
    )
    real.requires_grad_()
    expected = loss.xbm_loss(real, groups, memory, memory_groups)
    expected.backward()
    padded = torch.zeros(slots, DIM, dtype=torch.float64)
    padded[where] = real.detach()
    padded.requires_grad_()
    padded_memory = torch.zeros(m_slots, DIM, dtype=torch.float64)
    padded_memory[m_where] = memory
    with count_host_syncs() as syncs:
        got = loss.xbm_loss(
            padded, padded_groups, padded_memory, m_padded_groups, valid=valid, memory_valid=m_valid
        )
    got.backward()
    assert syncs.total == 0, syncs.by_op
    assert expected.abs() > 0
    assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert_close(padded.grad[where], real.grad, rtol=1e-10, atol=1e-12)


def test_a_memory_loss_without_masks_is_told_how_to_take_them():
    class OldStyle(TripletLoss):
        def _memory_loss(self, embeddings, groups, memory_embeddings, memory_groups):
            return embeddings.sum() * 0

    rows, groups = torch.randn(3, DIM), torch.tensor([0, 1, 0])
    loss = OldStyle()
    assert loss.xbm_loss(rows, groups, rows, groups) == 0  # no masks: called as before
    with pytest.raises(TypeError, match="memory_valid"):
        loss.xbm_loss(rows, groups, rows, groups, valid=torch.ones(3, dtype=torch.bool))


def test_real_mean_ignores_non_finite_padding():
    values = torch.tensor([1.0, float("nan"), 3.0, float("inf")], requires_grad=True)
    valid = torch.tensor([True, False, True, False])
    mean = real_mean(values, valid)
    mean.backward()
    assert_close(mean, torch.tensor(2.0))
    assert_close(values.grad, torch.tensor([0.5, 0.0, 0.5, 0.0]))
    assert_close(real_mean(values.detach(), torch.zeros(4, dtype=torch.bool)), torch.tensor(0.0))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: TripletLoss(mining="all"),
        lambda: OnlineContrastiveLoss(),
        lambda: CircleLoss(),
        lambda: FastAPLoss(),
    ],
)
def test_single_process_gathering_keeps_the_unmasked_path(factory):
    rows, groups = torch.randn(6, DIM, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    gathered = factory()
    gathered.gather_across_ranks = True
    assert gathered.gather_padded(rows, groups)[2] is None
    assert_close(gathered(rows, groups), factory()(rows, groups), rtol=0, atol=0)


def test_xbm_takes_masks_only_when_both_methods_accept_them():
    class OldMemory(TripletLoss):
        def _memory_loss(self, embeddings, groups, memory_embeddings, memory_groups):
            return embeddings.sum() * 0

    class OldXbm(TripletLoss):
        def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):
            return super().xbm_loss(embeddings, groups, memory_embeddings, memory_groups)

    class Forwarding(TripletLoss):
        def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups, **masks):
            return super().xbm_loss(embeddings, groups, memory_embeddings, memory_groups, **masks)

    assert TripletLoss().xbm_takes_masks() and Forwarding().xbm_takes_masks()
    assert not OldMemory().xbm_takes_masks() and not OldXbm().xbm_takes_masks()
