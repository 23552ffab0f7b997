import pytest
import torch

from quaterion.eval.group import GroupMetric, RetrievalRPrecision
from quaterion.eval.group.group_metric import GroupMetric as GroupMetricByPath


class _Top1(GroupMetric):
    """A user metric with only raw_compute: compute goes through precompute (dense path)."""

    def raw_compute(self, distance_matrix, labels):
        return labels.gather(1, distance_matrix.argmin(1, keepdim=True)).mean()


def test_prepare_labels_matches_loop():
    groups = torch.tensor([3, 1, 3, 3, 2])
    labels = GroupMetric.prepare_labels(groups)
    expected = [[i != j and groups[i] == groups[j] for j in range(5)] for i in range(5)]
    assert labels.dtype == torch.bool and labels.tolist() == expected


def test_precompute_order_and_self_mask():
    embeddings = torch.tensor([[0.0, 1], [0, 3], [4, 0]])
    labels, dist = GroupMetric("euclidean").precompute(embeddings, groups=torch.tensor([0, 0, 1]))
    assert labels.dtype == torch.float32 and labels.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    off = torch.cdist(embeddings, embeddings)
    assert torch.equal(dist.diagonal(), torch.full((3,), float("inf")))
    torch.testing.assert_close(dist.masked_fill(torch.eye(3, dtype=torch.bool), 0), off)


def test_own_item_ranks_last_even_where_max_plus_one_rounds_to_max():
    # dot-product distances of +-1e8: ``max + 1 == max`` in float32, so a ``max + 1`` own
    # item would tie with column 1 and (ties by column) rank before it in row 0
    embeddings = torch.tensor([[1e4, 0.0], [-1e4, 0.0], [1e4, 0.0]])
    labels, dist = GroupMetric("dot_product").precompute(embeddings, groups=torch.tensor([0, 0, 0]))
    off_max = dist[0, 1]
    assert off_max + 1 == off_max == dist[~torch.eye(3, dtype=torch.bool)].max()
    assert torch.argsort(dist[0], stable=True).tolist() == [2, 1, 0]


def test_user_metric_with_raw_compute_only_uses_dense_path():
    embeddings = torch.tensor([[0.0, 1], [0, 1.1], [5, 5], [5, 5.2]])
    value = _Top1("euclidean").compute(embeddings, torch.tensor([0, 0, 1, 1]))
    assert value.item() == 1.0
    assert GroupMetric is GroupMetricByPath


def test_float_or_complex_group_ids_are_refused():
    embeddings = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
    for groups in (
        torch.tensor([1.0, float("nan"), 1.0, float("nan")]),  # NaN matched nothing, silently
        torch.tensor([1.0, 2.0, 1.0, 2.0]),
        torch.tensor([1 + 0j, 2, 1, 2]),
    ):
        for call in (RetrievalRPrecision().compute, RetrievalRPrecision().step_compute):
            with pytest.raises(TypeError, match=f"integer tensor of group ids, got {groups.dtype}"):
                call(embeddings, groups=groups)


def test_bool_and_uint8_group_ids_equal_long_ids():
    embeddings = torch.tensor([[1.0, 1], [8, 8], [4, 4], [6, 7]])
    metric = RetrievalRPrecision("manhattan")
    # spec worked value for groups [1, 2, 1, 2]: 0.75
    for groups in (torch.tensor([True, False, True, False]), torch.tensor([1, 2, 1, 2]).byte()):
        assert metric.compute(embeddings, groups).item() == 0.75
        assert metric.step_compute(embeddings, groups=groups).item() == 0.75
