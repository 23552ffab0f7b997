"""Gradient cache with ``SyncBatchNorm`` under 2 gloo ranks: ranks whose batches need
different numbers of mini-batch passes stop together with a clear ``RankMismatchError``
before any layer runs (they would otherwise wait forever in the layers' collectives);
equal counts pass; models without a synchronising layer exchange nothing."""

import pytest

from tests.quaterion.distributed import _sync_batch_norm_cases as cases
from tests.quaterion.distributed._launch import spawned_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return spawned_results(tmp_path_factory, "sync_batch_norm", cases.run_rank, timeout=120)


def passes_by_hand(rows: int) -> int:
    """Mini-batches of 4 per encoding pass, or one plain pass for at most 4 records."""
    if rows <= cases.MINI:
        return 1
    return (rows + cases.MINI - 1) // cases.MINI


@pytest.mark.parametrize("name", list(cases.CASES))
def test_ranks_agree_or_stop_together(results, name):
    first, second, sync, training = cases.CASES[name]
    exchanged = sync and training
    mismatch = exchanged and passes_by_hand(first) != passes_by_hand(second)
    for rank in range(2):
        got = results[rank][name]
        assert got["collectives"] == ({"all_gather": 1} if exchanged else {}), got
        if mismatch:
            counts = f"rank 0: {passes_by_hand(first)}, rank 1: {passes_by_hand(second)}"
            assert counts in got["error"] and "SyncBatchNorm" in got["error"]
            assert "BatchNorm1d/2d/3d" in got["error"]  # names the fix
        else:
            assert got["error"] is None, got["error"]


def test_a_cached_step_stops_before_the_model_runs(results):
    for rank in range(2):
        got = results[rank]["step"]
        assert got["error"] is not None and "rank 0: 3, rank 1: 2" in got["error"]
        assert got["forwards"] == 0
