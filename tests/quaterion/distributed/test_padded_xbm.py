"""Cross-batch memory over 2 ranks whose batches differ in size (one rank empty), on the
device path of the gather (forced on CPU over gloo): after every step the memory holds
exactly every rank's real rows (padded rows are marked, never entries), the memory term and
each rank's gradients equal one process over the real rows, with one ``all_gather`` and no
host sync per step."""

import pytest
import torch

from quaterion.loss import TripletLoss
from tests.quaterion.distributed import _padded_xbm_cases as cases
from tests.quaterion.distributed._launch import spawned_results

pytestmark = pytest.mark.slow

WORLD = 2
RUNS = [(m, g) for m in cases.MINING for g in (True, False)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return spawned_results(tmp_path_factory, "padded_xbm", cases.run_rank, timeout=180)


def real_rows(step: int, steps=cases.STEPS):
    """Every rank's rows of ``step`` concatenated in rank order."""
    parts = [cases.rows_of(rank, step, n) for rank, n in enumerate(steps[step])]
    return torch.cat([e for e, _ in parts]), torch.cat([g for _, g in parts])


def reference(mining: str, gather: bool, step: int, rank: int, steps=cases.STEPS):
    """One process: the memory of the real rows queued so far (float32, as the buffer
    keeps them), the term of this step's anchors against it, each anchor's gradient."""
    memory = [real_rows(s, steps) for s in range(step)]
    memory_rows = torch.cat([m for m, _ in memory]) if memory else torch.zeros(0, cases.DIM)
    memory_groups = torch.cat([g for _, g in memory]) if memory else torch.zeros(0).long()
    memory_rows = memory_rows.double()
    sizes = steps[step]
    if gather:
        anchors, groups = real_rows(step, steps)
        start = sum(sizes[:rank])
    else:
        anchors, groups = cases.rows_of(rank, step, sizes[rank])
        start = 0
    anchors = anchors.clone().requires_grad_()
    term = TripletLoss(mining=mining).xbm_loss(anchors, groups, memory_rows, memory_groups)
    term.backward()
    grad = anchors.grad[start : start + sizes[rank]]
    # the gather's backward sums every rank's gradient of this rank's rows
    return term.detach(), (WORLD * grad if gather else grad), memory_rows, memory_groups


@pytest.mark.parametrize("step", range(len(cases.STEPS)))
@pytest.mark.parametrize("mining, gather", RUNS)
def test_memory_holds_only_real_rows(results, mining, gather, step):
    expected, expected_groups = real_rows(step)
    before = reference(mining, gather, step, 0)[2]
    for rank in range(WORLD):
        got = results[rank][(mining, gather, step)]
        valid = got["memory_valid"]
        assert valid is not None and valid.shape == got["memory_groups"].shape
        real = got["memory"][valid]
        assert real.shape[0] == before.shape[0] + expected.shape[0]
        torch.testing.assert_close(real[before.shape[0] :], expected.float(), rtol=0, atol=0)
        torch.testing.assert_close(got["memory_groups"][valid][before.shape[0] :], expected_groups)


@pytest.mark.parametrize("step", range(len(cases.STEPS)))
@pytest.mark.parametrize("mining, gather", RUNS)
def test_memory_term_and_gradients_equal_one_process(results, mining, gather, step):
    if step > 1:  # rank 1 holds rows at every step
        assert reference(mining, gather, step, 1)[0].abs() > 0, "degenerate case"
    for rank in range(WORLD):
        term, grad, _, _ = reference(mining, gather, step, rank)
        got = results[rank][(mining, gather, step)]
        if gather or cases.STEPS[step][rank]:
            torch.testing.assert_close(got["term"], term, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got["grad"], grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("step", range(1, len(cases.STEPS)))
@pytest.mark.parametrize("mining, gather", RUNS)
def test_one_collective_and_no_host_sync_per_step(results, mining, gather, step):
    for rank in range(WORLD):
        got = results[rank][(mining, gather, step)]
        assert got["forward"] == {"all_gather": 1}, got["forward"]
        assert got["syncs"] == 0, got["syncs"]


@pytest.mark.parametrize("step", range(len(cases.LEGACY_STEPS)))
@pytest.mark.parametrize("gather", [True, False])
def test_an_xbm_loss_override_without_masks_gets_compact_rows(results, gather, step):
    # ranks of different sizes (one empty): the four-argument override sees only real rows
    expected = torch.cat([real_rows(s, cases.LEGACY_STEPS)[0] for s in range(step + 1)])
    expected_groups = torch.cat([real_rows(s, cases.LEGACY_STEPS)[1] for s in range(step + 1)])
    for rank in range(WORLD):
        got = results[rank][("legacy", gather, step)]
        assert got["memory_valid"] is None
        torch.testing.assert_close(got["memory"], expected.float(), rtol=0, atol=0)
        torch.testing.assert_close(got["memory_groups"], expected_groups)
        assert got["syncs"] == 0, got["syncs"]
        term, grad, _, _ = reference("hard", gather, step, rank, cases.LEGACY_STEPS)
        if gather or cases.LEGACY_STEPS[step][rank]:
            torch.testing.assert_close(got["term"], term, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got["grad"], grad, rtol=1e-7, atol=1e-10)
    if step > 1:
        assert reference("hard", gather, step, 1, cases.LEGACY_STEPS)[0].abs() > 0
