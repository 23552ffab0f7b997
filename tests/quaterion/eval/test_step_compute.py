"""``step_compute`` (the training step's path) equals ``compute`` and never syncs."""

import pytest
import torch

from quaterion.eval.attached_metric import AttachedMetric
from quaterion.eval.group import RetrievalRPrecision
from quaterion.eval.pair import RetrievalPrecision, RetrievalReciprocalRank
from quaterion.utils.testing import count_host_syncs


def tied_embeddings(n: int, seed: int) -> torch.Tensor:
    """Coarse values: many exactly tied distances, the hard case of the ranking order."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (n, 3), generator=generator).float() + 0.01


def group_batch(n: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return tied_embeddings(n, seed), {"groups": torch.randint(0, 5, (n,), generator=generator)}


def pair_batch(num_pairs: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(2 * num_pairs, generator=generator)
    targets = {
        "labels": torch.randint(0, 2, (num_pairs,), generator=generator).float(),
        "pairs": order.reshape(num_pairs, 2),
        "subgroups": torch.zeros(2 * num_pairs),
    }
    return tied_embeddings(2 * num_pairs, seed), targets


METRICS = [
    ("r-precision", RetrievalRPrecision, group_batch),
    ("r-precision euclidean", lambda: RetrievalRPrecision("euclidean"), group_batch),
    ("precision@1", lambda: RetrievalPrecision(k=1), pair_batch),
    ("precision@5", lambda: RetrievalPrecision(k=5), pair_batch),
    ("precision@3 per query", lambda: RetrievalPrecision(k=3, reduce_func=None), pair_batch),
    ("reciprocal rank", RetrievalReciprocalRank, pair_batch),
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name,make,batch", METRICS, ids=[m[0] for m in METRICS])
def test_step_compute_equals_compute_without_syncs(name, make, batch, seed):
    metric = make()
    embeddings, targets = batch(32, seed)
    expected = metric.compute(embeddings, **targets)
    with count_host_syncs() as syncs:
        value = metric.step_compute(embeddings, **targets)
    assert syncs.total == 0, syncs
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)


def test_reciprocal_rank_with_another_reduction_falls_back_to_compute():
    metric = RetrievalReciprocalRank(reduce_func=torch.median)
    embeddings, targets = pair_batch(16, 0)
    torch.testing.assert_close(
        metric.step_compute(embeddings, **targets), metric.compute(embeddings, **targets)
    )


@pytest.mark.parametrize("name,make,batch", METRICS, ids=[m[0] for m in METRICS])
def test_non_finite_embeddings_give_nan_instead_of_a_synced_error(name, make, batch):
    metric = make()
    embeddings, targets = batch(16, 1)
    embeddings[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        metric.compute(embeddings, **targets)
    assert torch.isnan(metric.step_compute(embeddings, **targets)).all()


def test_batch_value_of_non_finite_embeddings_keeps_nan_with_full_weight():
    """An undefined batch is left out (weight 0); a broken one poisons the epoch value."""
    metric = AttachedMetric("rrp", RetrievalRPrecision())
    embeddings, targets = group_batch(8, 2)
    embeddings[0, 0] = float("inf")
    value, weight = metric.batch_value(embeddings, targets)
    assert torch.isnan(value) and int(weight) == 8


def test_batch_value_takes_no_host_sync():
    metric = AttachedMetric("rrp", RetrievalRPrecision(), reduce_fx="max")
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    with count_host_syncs() as syncs:
        undefined = metric.batch_value(embeddings, {"groups": torch.tensor([1, 2, 3])})
        defined = metric.batch_value(embeddings, {"groups": torch.tensor([1, 1, 2])})
    assert syncs.total == 0
    assert (undefined[0].item(), int(undefined[1])) == (-float("inf"), 0)
    assert (defined[0].item(), int(defined[1])) == (1.0, 3)


def test_negative_pair_index_gives_nan():
    metric = RetrievalPrecision(k=1)
    embeddings, targets = pair_batch(4, 0)
    targets["pairs"] = targets["pairs"].clone()
    targets["pairs"][0, 0] = -1
    assert torch.isnan(metric.step_compute(embeddings, **targets))


def test_precision_on_a_batch_shorter_than_k_is_left_out_with_a_warning():
    # the short last batch of an epoch must not stop the fit (compute raises ValueError)
    metric = AttachedMetric("p5", RetrievalPrecision(k=5))
    embeddings, targets = pair_batch(2, 0)  # 4 objects < k
    with pytest.raises(ValueError, match="k=5 is larger than the number of candidates"):
        metric.compute(embeddings, **targets)
    with pytest.warns(UserWarning, match=r"RetrievalPrecision\(k=5\) is undefined on a batch"):
        with count_host_syncs() as syncs:
            value, weight = metric.batch_value(embeddings, targets)
    assert syncs.total == 0
    assert value.item() == 0.0 and int(weight) == 0  # neutral value, weight 0
    embeddings, targets = pair_batch(3, 0)  # 6 objects >= k: the plain value
    torch.testing.assert_close(
        metric.batch_value(embeddings, targets)[0], metric.compute(embeddings, **targets)
    )
