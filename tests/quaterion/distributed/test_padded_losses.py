"""Gathering losses over 2 DDP ranks whose batches differ in size (one rank empty), on the
device path of the gather (forced on CPU over gloo): every loss family equals one process
over the concatenated real rows, in value and in every parameter gradient; the loss call
takes one ``all_gather`` and no host sync."""

import pytest
import torch

from tests.quaterion.distributed import _gather_cases as cases
from tests.quaterion.distributed import _padded_loss_cases as padded
from tests.quaterion.distributed._launch import spawned_results

pytestmark = pytest.mark.slow

MEASURED = [(case, sizes) for case in cases.CASES for sizes in padded.SIZES[padded.kind(case)]]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    return spawned_results(tmp_path_factory, "padded_losses", padded.run_rank, timeout=300)


@pytest.mark.parametrize("case, sizes", MEASURED)
def test_unequal_ranks_equal_one_process_over_the_real_rows(rank_results, case, sizes):
    expected = cases.single_process(case, sizes)
    assert expected["loss"].abs() > 0, "degenerate case: the loss should not be 0"
    for rank, results in enumerate(rank_results):
        got = results[(case, sizes)]
        torch.testing.assert_close(got["loss"], expected["loss"], rtol=1e-9, atol=1e-12)
        for name, grad in expected["grads"].items():
            assert grad.abs().sum() > 0, f"{case}: zero reference gradient for {name}"
            torch.testing.assert_close(
                got["grads"][name], grad, rtol=1e-7, atol=1e-10, msg=f"{case} rank {rank} {name}"
            )


@pytest.mark.parametrize("case, sizes", MEASURED)
def test_one_collective_and_no_host_sync_per_loss_call(rank_results, case, sizes):
    for results in rank_results:
        got = results[(case, sizes)]
        if case in padded.FULL_CHECK:
            # PML reads device values on the host itself: its gather is the checked one
            # (the row counts over the host, then the rows), compact and unpadded
            assert got["forward"] == {"all_gather": 2}, got["forward"]
            continue
        assert got["forward"] == {"all_gather": 1}, got["forward"]
        assert got["syncs"] == 0, (case, sizes, got["syncs"])


@pytest.mark.parametrize("case", cases.CASES)
def test_every_rank_empty_gives_zero_and_no_gradient(rank_results, case):
    # the gather is all padding: every loss leaves it out (0, not NaN, no crash)
    for rank, results in enumerate(rank_results):
        got = results[(case, padded.EMPTY)]
        torch.testing.assert_close(got["loss"], torch.zeros((), dtype=got["loss"].dtype))
        for name, grad in got["grads"].items():
            torch.testing.assert_close(
                grad, torch.zeros_like(grad), rtol=0, atol=0, msg=f"{case} rank {rank} {name}"
            )
