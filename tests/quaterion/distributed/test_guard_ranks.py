"""A NaN validation record on one rank of two: every rank stops with NonFiniteValidationError."""

import json

import pytest

from tests.quaterion.distributed._launch import free_port
from tests.quaterion.distributed.test_multinode_torchrun import launch_nodes, wait_all

pytestmark = pytest.mark.slow


def test_nan_validation_loss_on_one_rank_stops_every_rank(tmp_path):
    outputs = wait_all(launch_nodes(tmp_path, free_port(), module="guard_validation_script"))
    results = []
    for rank, (_, output) in enumerate(outputs):
        path = tmp_path / f"rank{rank}.json"
        assert path.is_file(), output[-6000:]
        results.append(json.loads(path.read_text()))
    assert [r["type"] for r in results] == ["NonFiniteValidationError"] * 2, results
    # rank 1 holds the record and names its batch; rank 0 reads the reduced epoch value
    assert "Validation loss is nan in batch 0 of the validation data" in results[1]["message"]
    assert "reduced over 2 processes" in results[0]["message"]
    assert "another rank's batch" in results[0]["message"]
