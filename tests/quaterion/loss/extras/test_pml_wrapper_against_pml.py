"""PytorchMetricLearningWrapper against calling PML directly on the same embeddings (value and
gradients, rtol 1e-5), PML's CrossBatchMemory, and the class-id checks of PML losses with
per-class weights."""

import copy

import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers

from quaterion.loss.extras import PytorchMetricLearningWrapper
from quaterion.loss.extras import pytorch_metric_learning_wrapper as wrapper_module

GROUPS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3])
WIDTH = 8

CASES = {
    "triplet": (lambda: losses.TripletMarginLoss(), None),
    "triplet+multi-similarity miner": (
        lambda: losses.TripletMarginLoss(),
        lambda: miners.MultiSimilarityMiner(),
    ),
    "contrastive, Lp not normalised + pair miner": (
        lambda: losses.ContrastiveLoss(distance=distances.LpDistance(normalize_embeddings=False)),
        lambda: miners.PairMarginMiner(),
    ),
    "ntxent, cosine": (lambda: losses.NTXentLoss(distance=distances.CosineSimilarity()), None),
    "multi-similarity, dot product": (
        lambda: losses.MultiSimilarityLoss(distance=distances.DotProductSimilarity()),
        lambda: miners.MultiSimilarityMiner(),
    ),
    "threshold reducer": (
        lambda: losses.TripletMarginLoss(reducer=reducers.ThresholdReducer(low=0.1)),
        None,
    ),
    "arcface": (lambda: losses.ArcFaceLoss(num_classes=4, embedding_size=WIDTH), None),
    "cosface": (lambda: losses.CosFaceLoss(num_classes=4, embedding_size=WIDTH), None),
    "proxy anchor": (lambda: losses.ProxyAnchorLoss(num_classes=4, embedding_size=WIDTH), None),
    "proxy nca": (lambda: losses.ProxyNCALoss(num_classes=4, embedding_size=WIDTH), None),
}


def embeddings(seed=0):
    return torch.randn(len(GROUPS), WIDTH, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(CASES))
def test_value_and_gradients_equal_pml_called_directly(name):
    make_loss, make_miner = CASES[name]
    torch.manual_seed(0)
    wrapped_loss = make_loss()
    direct_loss = copy.deepcopy(wrapped_loss)
    miner = make_miner() if make_miner else None
    ours, theirs = embeddings().requires_grad_(), embeddings().requires_grad_()

    value = PytorchMetricLearningWrapper(wrapped_loss, miner)(ours, GROUPS)
    value.backward()
    indices = miner(theirs, GROUPS) if miner else None
    expected = direct_loss(theirs, GROUPS, indices)
    expected.backward()

    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-7)
    for mine, other in zip(wrapped_loss.parameters(), direct_loss.parameters()):
        torch.testing.assert_close(mine.grad, other.grad, rtol=1e-5, atol=1e-7)


def test_cross_batch_memory_is_accepted_and_matches_pml_over_two_batches():
    torch.manual_seed(0)
    wrapped = losses.CrossBatchMemory(losses.ContrastiveLoss(), WIDTH, memory_size=32)
    direct = copy.deepcopy(wrapped)
    wrapper = PytorchMetricLearningWrapper(wrapped)
    for seed in (1, 2):  # the second batch meets the first one in the memory
        ours, theirs = embeddings(seed).requires_grad_(), embeddings(seed).requires_grad_()
        value = wrapper(ours, GROUPS)
        value.backward()
        expected = direct(theirs, GROUPS)
        expected.backward()
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-7)


CLASSIFIERS = [
    lambda: losses.ArcFaceLoss(num_classes=3, embedding_size=WIDTH),
    lambda: losses.ProxyNCALoss(num_classes=3, embedding_size=WIDTH),
    lambda: losses.ProxyAnchorLoss(num_classes=3, embedding_size=WIDTH),
    lambda: losses.NormalizedSoftmaxLoss(num_classes=3, embedding_size=WIDTH),
    lambda: losses.SoftTripleLoss(num_classes=3, embedding_size=WIDTH),
    lambda: losses.SubCenterArcFaceLoss(num_classes=3, embedding_size=WIDTH),
]


@pytest.mark.parametrize("make", CLASSIFIERS)
@pytest.mark.parametrize("shift", [0, -1])
def test_group_ids_outside_the_classes_raise(make, shift):
    # GROUPS holds id 3 (>= 3 classes) or, shifted, id -1; ProxyNCALoss alone returned a value
    wrapper = PytorchMetricLearningWrapper(make())
    with pytest.raises(AssertionError, match="num_groups=3"):
        wrapper(embeddings(), GROUPS + shift)
    with pytest.raises(AssertionError, match="num_groups=3"):
        wrapper.check_batch_targets({"groups": GROUPS + shift})


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_ids_in_range_pass_the_checks(make):
    groups = GROUPS % 3
    torch.manual_seed(0)
    wrapped = make()
    direct = copy.deepcopy(wrapped)
    wrapper = PytorchMetricLearningWrapper(wrapped)
    wrapper.check_batch_targets({"groups": groups})
    torch.testing.assert_close(wrapper(embeddings(), groups), direct(embeddings(), groups))


def test_wrong_embedding_width_is_named():
    wrapper = PytorchMetricLearningWrapper(losses.ArcFaceLoss(num_classes=4, embedding_size=5))
    with pytest.raises(ValueError, match="embedding_size=8"):
        wrapper(embeddings(), GROUPS)


def test_groups_of_another_length_are_named():
    wrapper = PytorchMetricLearningWrapper(losses.TripletMarginLoss())
    with pytest.raises(ValueError, match=r"`groups` must have shape \(12,\)"):
        wrapper(embeddings(), GROUPS[:5])


def test_device_ids_out_of_range_zero_the_call_and_raise_later(monkeypatch):
    # the device path (no host sync) is forced for CPU tensors; the error comes two calls late
    monkeypatch.setattr(wrapper_module, "device_check_needed", lambda value: True)
    wrapped = losses.ProxyNCALoss(num_classes=3, embedding_size=8)
    direct = copy.deepcopy(wrapped)
    wrapper = PytorchMetricLearningWrapper(wrapped)
    bad = wrapper(embeddings(), GROUPS)
    assert bad.detach().item() == 0.0
    good = GROUPS % 3
    expected = direct(embeddings(), good)
    torch.testing.assert_close(wrapper(embeddings(), good), expected)
    with pytest.raises(AssertionError, match="num_groups=3"):
        for _ in range(3):
            wrapper(embeddings(), good)


def test_cross_batch_memory_in_eval_mode_leaves_the_memory_alone():
    # validation used to enqueue its rows into the training memory
    torch.manual_seed(0)
    wrapped = losses.CrossBatchMemory(losses.ContrastiveLoss(), WIDTH, memory_size=32)
    direct = copy.deepcopy(wrapped)
    wrapper = PytorchMetricLearningWrapper(wrapped)
    wrapper(embeddings(1), GROUPS)
    direct(embeddings(1), GROUPS)
    wrapper.eval()
    torch.testing.assert_close(
        wrapper(embeddings(2), GROUPS), losses.ContrastiveLoss()(embeddings(2), GROUPS)
    )
    wrapper.train()
    ours, theirs = embeddings(3).requires_grad_(), embeddings(3).requires_grad_()
    value = wrapper(ours, GROUPS)
    value.backward()
    expected = direct(theirs, GROUPS)  # memory: batch 1 only
    expected.backward()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-7)


def test_cross_batch_memory_smaller_than_the_batch_or_of_another_width_is_named():
    small = PytorchMetricLearningWrapper(
        losses.CrossBatchMemory(losses.ContrastiveLoss(), WIDTH, memory_size=5)
    )
    with pytest.raises(ValueError, match="memory_size >= 12"):
        small(embeddings(), GROUPS)
    narrow = PytorchMetricLearningWrapper(
        losses.CrossBatchMemory(losses.ContrastiveLoss(), 3, memory_size=32)
    )
    with pytest.raises(ValueError, match="embedding_size=8"):
        narrow(embeddings(), GROUPS)


def test_in_a_fit_validation_rows_stay_out_of_the_cross_batch_memory():
    from tests.quaterion.train.helpers import EMB_DIM, Model, fit_losses, group_loader

    memory = losses.CrossBatchMemory(losses.ContrastiveLoss(), EMB_DIM, memory_size=64)
    model = Model(loss=PytorchMetricLearningWrapper(memory))
    train = group_loader()  # 24 samples
    fit_losses(model, train, group_loader(), num_sanity_val_steps=2)
    assert memory.queue_idx == 24  # the training rows only (validation added 24 + 16)


def test_in_a_fit_a_group_id_beyond_the_classes_is_named_before_the_step():
    from tests.quaterion.train.helpers import EMB_DIM, Model, fit_losses, group_loader

    arcface = losses.ArcFaceLoss(num_classes=3, embedding_size=EMB_DIM)  # the data has 4 groups
    with pytest.raises(AssertionError, match=r"ArcFaceLoss.*num_groups=3"):
        fit_losses(Model(loss=PytorchMetricLearningWrapper(arcface)), group_loader())


def test_pml_distributed_wrapper_is_refused_naming_gather_across_ranks():
    from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

    with pytest.raises(TypeError, match="gather_across_ranks=True"):
        PytorchMetricLearningWrapper(DistributedLossWrapper(losses.ContrastiveLoss()))
