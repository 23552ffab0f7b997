"""The gradient cache's SyncBatchNorm pass-count rule in one process (the 2-rank exchange is
tested in tests/quaterion/distributed/test_gradient_cache_sync_bn.py)."""

import pytest
from torch import nn

from quaterion.train.gradient_cache_ranks import (
    check_equal_passes,
    mini_batch_passes,
    syncs_batch_norm,
)


def test_a_sync_batch_norm_deep_in_the_tree_is_found_in_training_mode_only():
    model = nn.ModuleDict(
        {"a": nn.Linear(2, 2), "b": nn.Sequential(nn.ReLU(), nn.SyncBatchNorm(2))}
    )
    assert syncs_batch_norm(model)
    model["b"][1].eval()  # an eval-mode layer takes no collective
    assert not syncs_batch_norm(model)
    assert not syncs_batch_norm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))


@pytest.mark.parametrize(
    "size, mini, expected", [(0, 4, 1), (1, 4, 1), (4, 4, 1), (5, 4, 2), (8, 4, 2), (9, 4, 3)]
)
def test_passes_per_encoding_pass(size, mini, expected):
    assert mini_batch_passes(size, mini) == expected


def test_one_process_exchanges_nothing():
    check_equal_passes(nn.SyncBatchNorm(2), 9, 4)  # no process group: returns at once
