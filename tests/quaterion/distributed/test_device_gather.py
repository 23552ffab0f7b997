"""``gather_rows(..., equal_rows=True)`` on its device path (no size exchange), forced on
CPU tensors over 2 gloo processes: one collective and no host sync per call once a layout
is agreed, rows and gradients equal a single-process computation over the concatenated
batch; unequal row counts or another layout on one rank give NaN outputs and the same
``RankMismatchError`` on both ranks two calls later (or at ``raise_pending_gather_errors``);
a change every rank makes together re-agrees the layout without an error."""

import pytest
import torch

from tests.quaterion.distributed import _device_gather_cases as cases
from tests.quaterion.distributed._gather_plan_cases import loss_of, rows_of
from tests.quaterion.distributed._launch import spawned_results

pytestmark = pytest.mark.slow

WORLD = cases.WORLD
NAMES = [name for name, _, _, _ in cases.CALLS]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return spawned_results(tmp_path_factory, "device_gather", cases.run_rank, timeout=180)


@pytest.mark.parametrize("name, expected", [(c[0], c[3]) for c in cases.CALLS])
def test_collectives_and_host_syncs_per_call(results, name, expected):
    for record in cases.records_with_counts(results, name, expected, cases.RAISING):
        assert record["syncs"] == 0, name


def single_process(call: int, sizes):
    parts = [rows_of(rank, call, n) for rank, n in enumerate(sizes)]
    embeddings = torch.cat([e for e, _ in parts]).requires_grad_()
    labels = torch.cat([labels for _, labels in parts])
    loss_of(embeddings).backward()
    return embeddings.detach(), labels, list(torch.split(embeddings.grad, list(sizes)))


@pytest.mark.parametrize("call", range(len(cases.CALLS)))
def test_rows_and_gradients_equal_a_single_process_run(results, call):
    name, sizes, kind, _ = cases.CALLS[call]
    if name in cases.RAISING or name in cases.POISONED:
        return  # checked below
    rows, labels, grads = single_process(call, sizes)
    for rank in range(WORLD):
        record = results[rank][name]
        torch.testing.assert_close(record["rows"], rows, rtol=0, atol=0)
        torch.testing.assert_close(record["labels"], labels, rtol=0, atol=0)
        if kind == "queue":
            assert "grad" not in record
            continue
        torch.testing.assert_close(record["grad"], WORLD * grads[rank], rtol=1e-6, atol=1e-6)
        # backward: one all_reduce of the gradient, padded to the agreed rows per rank
        assert record["backward"] == {"all_reduce": 1}, (rank, name, record["backward"])


@pytest.mark.parametrize(
    "name, rows_per_rank",
    [
        ("unequal", (8, 4)),
        ("other_layout", (8, 8)),
        ("too_many", (12, 12)),
        ("twice_a", (8, 4)),
        ("twice_b", (8, 4)),
        ("last_unequal", (8, 4)),
        ("stale_unequal", (8, 4)),
    ],
)
def test_a_broken_promise_poisons_the_outputs(results, name, rows_per_rank):
    for rank in range(WORLD):
        record = results[rank][name]
        assert record["rows"].shape == (rows_per_rank[rank], 3), record["rows"].shape
        assert record["rows"].dtype == torch.float32
        assert torch.isnan(record["rows"]).all(), (rank, name)
        # backward still takes the same collective on every rank (no hang, no crash)
        assert record["backward"] == {"all_reduce": 1}, (rank, name, record["backward"])
        # every rank's own rows get a (NaN) gradient: DDP reduces every parameter alike
        assert record["grad"] is not None and not torch.isfinite(record["grad"]).any()


def call(name: str) -> str:
    """How the messages name the call ``name`` (calls are counted from 1)."""
    return f"gather_rows call {NAMES.index(name) + 1} "


@pytest.mark.parametrize(
    "name, parts",
    [
        ("raises_unequal", [call("unequal"), "rank 0: 4 rows", "rank 1: 2 rows"]),
        ("raises_other", [call("other_layout"), "rank 0: 4 rows", "rank 1: another layout"]),
        (
            "raises_too_many",
            [call("too_many"), "rank 0: 6 rows", "rank 1: 7 rows, more than the 6 rows"],
        ),
        ("queue_unequal", ["every rank must pass the same", "rank 0: 4 rows", "rank 1: 2 rows"]),
        ("raises_twice", [call("twice_a"), "rank 1: 2 rows"]),
        ("flush", [call("last_unequal"), "rank 0: 4 rows", "rank 1: 2 rows"]),
    ],
)
def test_every_rank_raises_the_same_error(results, name, parts):
    messages = [results[rank][name].get("error") for rank in range(WORLD)]
    assert messages[0] is not None and messages[0] == messages[1], messages
    for part in parts + ["drop_last=True"]:
        assert part in messages[0], messages[0]
