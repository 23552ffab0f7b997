"""``gather_rows_padded`` on its device path (forced on CPU tensors over 2 gloo processes):
ranks with different row counts (one of them empty) take one collective and no host sync
per call; every rank gets each rank's rows padded to the agreed capacity with a mask of the
real ones, and the real rows, their order and their gradients equal a single-process
computation over the concatenated rows. A rank with more rows than the capacity, or another
dtype, still gives NaN outputs and the same ``RankMismatchError`` on both ranks two calls
later; when every rank grows, they re-agree without an error."""

import pytest
import torch

from tests.quaterion.distributed import _padded_gather_cases as cases
from tests.quaterion.distributed._device_gather_cases import records_with_counts
from tests.quaterion.distributed._gather_plan_cases import rows_of
from tests.quaterion.distributed._launch import spawned_results

pytestmark = pytest.mark.slow

NAMES = [call[0] for call in cases.CALLS]
WORLD = cases.WORLD


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return spawned_results(tmp_path_factory, "padded_gather", cases.run_rank, timeout=180)


@pytest.mark.parametrize("name, expected", [(call[0], call[3]) for call in cases.CALLS])
def test_one_collective_and_no_host_sync_per_call(results, name, expected):
    for record in records_with_counts(results, name, expected, cases.RAISING):
        if name not in cases.COMPACT:
            assert record["syncs"] == 0, name
            assert record["backward"] == {"all_reduce": 1}, (name, record["backward"])


def naive_single_process(call: int, sizes):
    """The real rows of every rank concatenated, their labels, and each rank's gradient of
    ``sum_i logsumexp_j <e_i, e_j>`` over them (an explicit double loop)."""
    parts = [rows_of(rank, call, n) for rank, n in enumerate(sizes)]
    embeddings = torch.cat([e for e, _ in parts]).double().requires_grad_()
    labels = torch.cat([labels for _, labels in parts])
    total = embeddings.new_zeros(())
    for i in range(len(embeddings)):
        terms = torch.stack([embeddings[i] @ embeddings[j] for j in range(len(embeddings))])
        total = total + torch.logsumexp(terms, dim=0)
    if len(embeddings):
        total.backward()
        grads = embeddings.grad.float()
    else:
        grads = torch.zeros(0, 3)
    return embeddings.detach().float(), labels, list(torch.split(grads, list(sizes)))


# the calls that gather (not the poisoned ones, nor those raising an earlier call's error)
GATHERED = [i for i, c in enumerate(cases.CALLS) if c[0] not in cases.RAISING | cases.POISONED]


@pytest.mark.parametrize("call", GATHERED)
def test_real_rows_and_gradients_equal_a_single_process_run(results, call):
    name, sizes = cases.CALLS[call][:2]
    rows, labels, grads = naive_single_process(call, sizes)
    for rank in range(WORLD):
        record = results[rank][name]
        valid = record["valid"]
        assert valid.dtype == torch.bool and valid.shape == record["rows"].shape[:1]
        if name in cases.COMPACT:
            assert valid.all() and record["rows"].shape[0] == sum(sizes)
        else:  # every rank's slot of `capacity` rows, the real ones first
            capacity = record["rows"].shape[0] // WORLD
            slots = torch.arange(capacity)
            expected = torch.cat([slots < n for n in sizes])
            torch.testing.assert_close(valid, expected, rtol=0, atol=0)
            padding = record["rows"][~valid]
            torch.testing.assert_close(padding, torch.zeros_like(padding), rtol=0, atol=0)
        torch.testing.assert_close(record["rows"][valid], rows, rtol=0, atol=0)
        torch.testing.assert_close(record["labels"][valid], labels, rtol=0, atol=0)
        assert record["grad"].shape == (sizes[rank], 3)
        torch.testing.assert_close(record["grad"], WORLD * grads[rank], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, rows_per_rank", [("too_many", (10, 10)), ("other_layout", (8, 8))])
def test_more_rows_or_another_dtype_poisons_every_row(results, name, rows_per_rank):
    for rank in range(WORLD):
        record = results[rank][name]
        assert record["rows"].shape == (rows_per_rank[rank], 3), record["rows"].shape
        assert torch.isnan(record["rows"]).all(), (rank, name)
        assert record["valid"].all()  # the NaN rows reach the loss: the step is not applied
        assert record["backward"] == {"all_reduce": 1}, (rank, name, record["backward"])
        assert record["grad"] is not None and not torch.isfinite(record["grad"]).any()


@pytest.mark.parametrize(
    "name, parts",
    [
        (
            "raises_too_many",
            [
                f"gather_rows call {NAMES.index('too_many') + 1} ",
                "rank 0: 5 rows",
                "rank 1: 6 rows, more than the 5 rows agreed",
                "reset_gathers()",
            ],
        ),
        (
            "raises_other",
            [f"gather_rows call {NAMES.index('other_layout') + 1} ", "rank 1: another layout"],
        ),
    ],
)
def test_every_rank_raises_the_same_error(results, name, parts):
    messages = [results[rank][name].get("error") for rank in range(WORLD)]
    assert messages[0] is not None and messages[0] == messages[1], messages
    for part in parts + ["gather_rows_padded", "make the first batch of the loop the largest"]:
        assert part in messages[0], messages[0]
