"""Hostile batches for the group losses: empty batches, a memory of padded rows only,
NaN embeddings, int32 class ids, non-tensor groups and malformed row masks. Each case is
compared with what the loss gives on the same real rows by another route (the unmasked
loss, an empty memory, the int64 ids), or must raise an error naming the argument."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

import quaterion.loss as losses
from tests.quaterion.loss.conftest import E, G

GROUP_LOSSES = {
    "triplet_hard": lambda: losses.TripletLoss(),
    "triplet_soft": lambda: losses.TripletLoss(soft=True),
    "triplet_all": lambda: losses.TripletLoss(mining="all"),
    "triplet_semi_hard": lambda: losses.TripletLoss(mining="semi_hard"),
    "online_contrastive_hard": lambda: losses.OnlineContrastiveLoss(),
    "online_contrastive_all": lambda: losses.OnlineContrastiveLoss(mining="all"),
    "circle": lambda: losses.CircleLoss(),
    "fast_ap": lambda: losses.FastAPLoss(),
    "softmax": lambda: losses.SoftmaxLoss(3, 5),
    "arcface": lambda: losses.ArcFaceLoss(3, 5),
    "cosface": lambda: losses.CosFaceLoss(3, 5),
    "center": lambda: losses.CenterLoss(3, 5),
}


@pytest.mark.parametrize("name", sorted(GROUP_LOSSES))
def test_an_empty_batch_gives_an_attached_zero(name):
    # no anchor, no pair: nothing to average, as a batch of padded rows only gives
    embeddings = torch.zeros(0, 3, requires_grad=True)
    loss = GROUP_LOSSES[name]()(embeddings, torch.zeros(0, dtype=torch.long))
    assert_close(loss, torch.zeros((), dtype=embeddings.dtype), rtol=0, atol=0)
    loss.backward()
    assert_close(embeddings.grad, torch.zeros_like(embeddings), rtol=0, atol=0)


@pytest.mark.parametrize("mining", ["hard", "semi_hard"])
def test_a_memory_of_padded_rows_only_is_an_empty_memory(mining):
    loss = losses.TripletLoss(mining=mining)
    anchors = E.clone().requires_grad_()
    got = loss.xbm_loss(
        anchors, G, E.flip(0), G.flip(0), memory_valid=torch.zeros(len(G), dtype=torch.bool)
    )
    expected = loss.xbm_loss(E, G, E[:0], G[:0])
    assert_close(got, expected, rtol=0, atol=0)
    got.backward()
    assert_close(anchors.grad, torch.zeros_like(anchors), rtol=0, atol=0)


@pytest.mark.parametrize("mining", ["hard", "semi_hard"])
def test_an_empty_batch_against_a_memory_gives_zero(mining):
    loss = losses.TripletLoss(mining=mining)
    got = loss.xbm_loss(E[:0], G[:0], E, G)
    assert_close(got, torch.zeros((), dtype=E.dtype), rtol=0, atol=0)


def test_fast_ap_of_nan_embeddings_is_nan_not_an_index_error():
    # a NaN distance must not become an out-of-range histogram bin (on CUDA a
    # device-side assert ends the process); the non-finite guard reads the NaN
    embeddings = E.clone()
    embeddings[2, 0] = float("nan")
    assert torch.isnan(losses.FastAPLoss()(embeddings, G))


@pytest.mark.parametrize("groups", [G.tolist(), G.numpy()])
def test_fast_ap_names_groups_that_are_not_a_tensor(groups):
    with pytest.raises(TypeError, match="groups"):
        losses.FastAPLoss()(E, groups)


@pytest.mark.parametrize("name", ["softmax", "arcface", "cosface", "center"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_classifier_losses_take_any_integer_ids(name, dtype):
    torch.manual_seed(0)
    loss = GROUP_LOSSES[name]()
    groups = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = loss(E, groups)
    assert_close(loss(E, groups.to(dtype)), expected, rtol=0, atol=0)


@pytest.mark.parametrize("mining", ["hard", "semi_hard"])
@pytest.mark.parametrize(
    "field, mask, needle",
    [
        ("valid", torch.ones(6, dtype=torch.long), "bool"),
        ("valid", torch.ones(6), "bool"),
        ("valid", torch.ones(5, dtype=torch.bool), r"\(6,\)"),
        ("valid", [True] * 6, "bool"),
        ("memory_valid", np.ones(6, dtype=bool), "bool"),
        ("memory_valid", torch.ones(6, 1, dtype=torch.bool), r"\(6,\)"),
    ],
)
def test_xbm_loss_names_a_malformed_row_mask(mining, field, mask, needle):
    with pytest.raises((TypeError, ValueError), match=f"{field}.*{needle}"):
        losses.TripletLoss(mining=mining).xbm_loss(E, G, E, G, **{field: mask})


def _matrix_strategies():
    """``(distance matrix, groups, valid or None) -> loss`` of every masked strategy."""
    from quaterion.loss.circle_loss import circle_loss
    from quaterion.loss.fast_ap_loss import fast_ap_loss
    from quaterion.loss.online_contrastive_loss import (
        online_contrastive_loss_all,
        online_contrastive_loss_hard,
    )
    from quaterion.loss.triplet_loss import (
        triplet_loss_all,
        triplet_loss_batch_hard,
        triplet_loss_semi_hard,
    )

    def mined(strategy, **kwargs):
        def run(dist, groups, valid):
            masks = None if valid is None else (valid, valid)
            return strategy(dist, groups, groups, 0.5, valid=masks, **kwargs)

        return run

    return {
        "triplet_all": mined(triplet_loss_all),
        "triplet_hard": mined(triplet_loss_batch_hard),
        "triplet_soft": mined(triplet_loss_batch_hard, soft=True),
        "triplet_semi_hard": mined(triplet_loss_semi_hard),
        "online_contrastive_hard": mined(online_contrastive_loss_hard),
        "online_contrastive_all": mined(online_contrastive_loss_all),
        "circle": lambda dist, groups, valid: circle_loss(
            1 - dist, groups, scale_factor=8.0, valid=valid
        ),
        "fast_ap": lambda dist, groups, valid: fast_ap_loss(4 * dist, groups, valid=valid),
    }


@pytest.mark.parametrize("name", sorted(_matrix_strategies()))
def test_padded_entries_are_selected_away_not_multiplied(name):
    # whatever a padded row's distances hold (NaN here), the masks select them away
    strategy = _matrix_strategies()[name]
    cosine = losses.TripletLoss().distance_metric
    real = E.double().requires_grad_()
    expected = strategy(cosine.distance_matrix(real), G, None)
    expected.backward()
    padded = torch.cat([E.double(), torch.zeros(2, 3, dtype=torch.float64)]).requires_grad_()
    groups = torch.cat([G, torch.zeros(2, dtype=torch.long)])
    valid = torch.arange(8) < 6
    real_pair = valid[:, None] & valid[None, :]
    dist = cosine.distance_matrix(padded).masked_fill(~real_pair, float("nan"))
    got = strategy(dist, groups, valid)
    got.backward()
    assert expected.abs() > 0
    assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert_close(padded.grad[:6], real.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mining", ["hard", "semi_hard", "all"])
def test_float16_zero_padding_leaves_the_loss_and_gradients_of_real_rows(mining):
    # a zero (padded) row had NaN cosine distances in float16 (the norm's default eps
    # rounds to 0 there), which reached every real row's gradient through the matmul
    cosine = losses.TripletLoss().distance_metric
    assert not torch.isnan(cosine.distance_matrix(torch.zeros(2, 3).half())).any()
    loss = losses.TripletLoss(mining=mining)
    real = E.half().requires_grad_()
    expected = loss._loss(real, G)
    expected.backward()
    padded = torch.cat([E, torch.zeros(2, 3)]).half().requires_grad_()
    groups = torch.cat([G, torch.zeros(2, dtype=torch.long)])
    valid = torch.arange(8) < 6
    got = loss._loss(padded, groups, valid=(valid, valid))
    got.backward()
    # float16's own tolerances: the sums run over more (selected-away) entries
    assert_close(got, expected)
    assert_close(padded.grad[:6], real.grad)


@pytest.mark.parametrize("name", ["arcface", "cosface", "center"])
def test_float16_zero_padding_leaves_classifier_gradients_finite(name):
    # normalising a zero (padded) row gave NaN in float16, and the matmul with the class
    # weights carried it into the weights' gradient
    torch.manual_seed(0)
    loss = GROUP_LOSSES[name]().half()
    groups = torch.tensor([0, 1, 2, 3, 4, 0])
    real = E.half().requires_grad_()
    expected = loss._loss(real, groups)
    expected.backward()
    weights_grad = next(loss.parameters()).grad.clone()
    loss.zero_grad()
    padded = torch.cat([E, torch.zeros(2, 3)]).half().requires_grad_()
    valid = torch.arange(8) < 6
    got = loss._loss(padded, torch.cat([groups, torch.zeros(2, dtype=torch.long)]), valid)
    got.backward()
    assert_close(got, expected)
    assert_close(padded.grad[:6], real.grad)
    assert_close(next(loss.parameters()).grad, weights_grad)


def _padded_only_cases():
    from tests.quaterion.loss.test_padded_rows import CLASSIFIERS, STRATEGIES

    return {**STRATEGIES, **{name: make() for name, make in CLASSIFIERS.items()}}


@pytest.mark.parametrize("name", sorted(_padded_only_cases()))
def test_a_gather_of_padding_only_gives_zero_and_no_gradient(name):
    # every rank passed 0 rows: every gathered row is padding (zeros, group 0)
    rows = torch.zeros(6, 4, dtype=torch.float64, requires_grad=True)
    groups = torch.zeros(6, dtype=torch.long)
    loss = _padded_only_cases()[name](rows, groups, torch.zeros(6, dtype=torch.bool))
    loss.backward()
    assert_close(loss, torch.zeros((), dtype=torch.float64), rtol=0, atol=0)
    assert_close(rows.grad, torch.zeros_like(rows), rtol=0, atol=0)


def test_an_own_xbm_loss_with_masks_gets_them_whatever_its_memory_loss():
    class OwnTerm(losses.GroupLoss):  # xbm_loss of its own: GroupLoss._memory_loss is unused
        supports_xbm = True

        def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups, **masks):
            return embeddings.sum() * 0

    class FourArguments(losses.GroupLoss):
        supports_xbm = True

        def xbm_loss(self, embeddings, groups, memory_embeddings, memory_groups):
            return embeddings.sum() * 0

    class OldMemoryLoss(losses.TripletLoss):  # the base xbm_loss hands masks to _memory_loss
        def _memory_loss(self, embeddings, groups, memory_embeddings, memory_groups):
            return embeddings.sum() * 0

    assert OwnTerm().xbm_takes_masks()
    assert not FourArguments().xbm_takes_masks()
    assert not OldMemoryLoss().xbm_takes_masks()
    assert losses.TripletLoss().xbm_takes_masks()


@pytest.mark.parametrize("name", ["circle", "fast_ap"])
def test_a_row_mask_with_separate_references_is_refused(name):
    # the mask covers the rows of a square batch only; with references it was ignored
    from quaterion.loss.circle_loss import circle_loss
    from quaterion.loss.fast_ap_loss import fast_ap_loss

    function = {"circle": circle_loss, "fast_ap": fast_ap_loss}[name]
    valid = torch.tensor([True, True, True, True, True, False])
    with pytest.raises(ValueError, match="valid"):
        function(torch.rand(6, 6), G, G.flip(0), valid=valid)
