"""``gather_rows`` on 2 gloo processes, collectives counted: once a layout is agreed, one
collective per call (equal or uneven sizes, alternating layouts); a rank that changes its
layout or passes more rows makes every rank fall back to the full check together, and a
mismatch raises the same error on every rank. Rows and gradients equal a single-process
computation over the concatenated batch."""

import pytest
import torch

from tests.quaterion.distributed import _gather_plan_cases as cases
from tests.quaterion.distributed._launch import spawn_ranks

pytestmark = pytest.mark.slow

WORLD = cases.WORLD


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gather_plan")
    spawn_ranks(cases.run_rank, (str(tmp / "store"), str(tmp)), world=WORLD, timeout=180)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def forward_collectives(results, name):
    """The forward collectives of one call, the same on both ranks."""
    counts = [results[rank][name]["forward"] for rank in range(WORLD)]
    assert counts[0] == counts[1], (name, counts)
    return counts[0]


@pytest.mark.parametrize("name, expected", [(c[0], c[3]) for c in cases.CALLS])
def test_collectives_per_call(results, name, expected):
    counts = forward_collectives(results, name)
    assert counts.get("all_gather") == expected, counts
    if "error" not in results[0][name]:
        assert set(counts) == {"all_gather"}, counts


def test_backward_takes_one_all_reduce(results):
    for rank in range(WORLD):
        for name, _, kind, _ in cases.CALLS:
            record = results[rank][name]
            if kind == "grad":
                assert record["backward"] == {"all_reduce": 1}, (rank, name, record)
            elif "error" not in record:
                assert record["backward"] == {}, (rank, name, record)


def single_process(call: int, sizes):
    """The concatenated batch, and each rank's share of the gradient of the loss of it."""
    parts = [cases.rows_of(rank, call, n) for rank, n in enumerate(sizes)]
    embeddings = torch.cat([e for e, _ in parts]).requires_grad_()
    labels = torch.cat([labels for _, labels in parts])
    cases.loss_of(embeddings).backward()
    grads = list(torch.split(embeddings.grad, list(sizes)))
    return embeddings.detach(), labels, grads


@pytest.mark.parametrize("call", range(len(cases.CALLS)))
def test_rows_and_gradients_equal_a_single_process_run(results, call):
    name, sizes, kind, _ = cases.CALLS[call]
    if kind.startswith("bad"):
        return  # checked below
    rows, labels, grads = single_process(call, sizes)
    for rank in range(WORLD):
        record = results[rank][name]
        expected = rows.double() if kind == "big" else rows  # float32 values, exactly
        assert record["rows"].dtype == expected.dtype and record["labels"].dtype == torch.int64
        torch.testing.assert_close(record["rows"], expected, rtol=0, atol=0)
        torch.testing.assert_close(record["labels"], labels, rtol=0, atol=0)
        if kind == "grad":
            # both ranks compute the same loss: each rank's own rows get world x its share
            torch.testing.assert_close(record["grad"], WORLD * grads[rank], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name, parts",
    [
        (
            "dtype_mismatch",
            ["rank 0: 4 rows", "torch.float32 requires_grad", "torch.float64 requires_grad"],
        ),
        ("not_tensors", ["rank 1: (invalid) the inputs must be tensors, got ['list', 'Tensor']"]),
    ],
)
def test_a_rank_leaving_the_agreed_layout_fails_every_rank_alike(results, name, parts):
    messages = [results[rank][name].get("error") for rank in range(WORLD)]
    assert messages[0] is not None and messages[0] == messages[1]
    for part in parts:
        assert part in messages[0], messages[0]
    # the expected-layout gather reported it, then the full check named it: the rows, the
    # two integers, the descriptions
    assert forward_collectives(results, name) == {"all_gather": 2, "all_gather_object": 1}


def test_call_names_are_unique():
    names = [name for name, _, _, _ in cases.CALLS]
    assert len(set(names)) == len(names)
