"""``quaterion.distributed`` on 2 real gloo processes: gathered rows equal the plain
concatenation, mismatched ranks raise the same error on every rank before any data moves,
and a failure on one rank of a rank-0 section or a ``fail_together`` block stops every rank
at once."""

import pytest
import torch

from quaterion import distributed
from tests.quaterion.distributed import _collective_cases as cases
from tests.quaterion.distributed._launch import spawn_ranks

pytestmark = pytest.mark.slow

WORLD = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collectives")
    spawn_ranks(cases.run_rank, (str(tmp / "store"), str(tmp)), world=WORLD, timeout=180)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def concatenated(sizes, seed=0):
    parts = [cases.rank_tensors(rank, n, seed) for rank, n in enumerate(sizes)]
    return [torch.cat(columns) for columns in zip(*parts)]


@pytest.mark.parametrize(
    "case, sizes, seed",
    [("uneven", cases.SIZES, 0), ("equal", (4, 4), 1), ("empty_rank", (0, 2), 2)],
)
def test_gathered_rows_equal_the_concatenation_on_every_rank(results, case, sizes, seed):
    expected = concatenated(sizes, seed)
    for rank in range(WORLD):
        got = results[rank][case]["value"]
        assert len(got) == len(expected)
        for tensor, reference in zip(got, expected):
            assert tensor.dtype == reference.dtype and tensor.shape == reference.shape
            torch.testing.assert_close(tensor, reference, rtol=0, atol=0)


def test_rank_without_rows_takes_the_layout_of_the_others(results):
    expected = torch.arange(8.0).reshape(2, 4)
    for rank in range(WORLD):
        gathered, labels, grad = results[rank]["empty_rank_other_layout"]["value"]
        assert gathered.dtype == torch.float32 and labels.dtype == torch.int64
        torch.testing.assert_close(gathered, expected, rtol=0, atol=0)
        torch.testing.assert_close(labels, torch.tensor([3, 4]), rtol=0, atol=0)
        # d(sum of 2 x rows)/d(rows), summed over both ranks' identical losses
        own = expected if rank == 1 else torch.zeros(0, 7, dtype=torch.float64)
        torch.testing.assert_close(grad, torch.full_like(own, 2.0 * WORLD), rtol=0, atol=0)


def test_gradient_of_own_rows_is_summed_over_ranks(results):
    (expected,) = concatenated(cases.SIZES)[:1]
    weights = torch.arange(expected.numel(), dtype=torch.float32).reshape(expected.shape)
    start = 0
    for rank, rows in enumerate(cases.SIZES):
        gathered, grad = results[rank]["gradient"]["value"]
        torch.testing.assert_close(gathered, expected, rtol=0, atol=0)
        # every rank's loss contributes the weights of this rank's rows once
        torch.testing.assert_close(grad, WORLD * weights[start : start + rows], rtol=0, atol=0)
        start += rows


def test_rank_mismatch_error_is_a_value_error_raised_on_every_rank():
    assert issubclass(distributed.RankMismatchError, ValueError)
    assert issubclass(distributed.RankMismatchError, distributed.ErrorOnEveryRank)


@pytest.mark.parametrize(
    "case, each_rank",
    [
        (
            "width",
            [
                "rank 0: 3 rows, 1 tensors on cpu: shape (rows, 4)",
                "rank 1: 3 rows, 1 tensors on cpu: shape (rows, 5)",
            ],
        ),
        ("dtype", ["torch.float32", "torch.float64"]),
        ("count", ["rank 0: 3 rows, 1 tensors", "rank 1: 3 rows, 2 tensors"]),
        (
            "rows_on_one_rank",
            [
                "rank 0: 3 rows",
                "rank 1: (invalid) every tensor needs the same number of rows, got shapes [(3, 4), (4,)]",
            ],
        ),
        ("no_tensors_on_one_rank", ["rank 0: 3 rows, 1 tensors", "rank 1: 0 rows, 0 tensors"]),
        (
            "requires_grad",
            [
                "rank 0: 3 rows, 1 tensors on cpu: shape (rows, 4) torch.float32\n",
                "rank 1: 3 rows, 1 tensors on cpu: shape (rows, 4) torch.float32 requires_grad",
            ],
        ),
    ],
)
def test_mismatched_ranks_raise_the_same_error_on_every_rank(results, case, each_rank):
    messages = []
    for rank in range(WORLD):
        outcome = results[rank][case]
        # RankMismatchError is a ValueError that every rank raises together
        assert outcome.get("error") == "RankMismatchError", outcome
        messages.append(outcome["message"])
    assert messages[0] == messages[1]
    message = messages[0] + "\n"
    assert "every rank must pass the same number of tensors" in message
    for part in each_rank:
        assert part in message, message


def test_rank_zero_section_failing_stops_every_rank_at_once(results):
    zero, one = results[0]["rank_zero_fails"], results[1]["rank_zero_fails"]
    assert (zero["error"], zero["message"]) == ("ValueError", "boom on rank zero")
    assert one["error"] == "RankFailedError"
    assert "rank 0: ValueError: boom on rank zero" in one["message"]
    assert "on_rank_zero_then_wait(" in one["message"]
    assert one["seconds"] < 30  # not the collective timeout


def test_rank_zero_section_returns_on_rank_zero_after_it_finished(results):
    assert results[0]["rank_zero_writes"]["value"] == ("result", True)
    # rank 1 got None, and only once rank 0's file was written
    assert results[1]["rank_zero_writes"]["value"] == (None, True)


def test_block_failing_on_one_rank_fails_on_every_rank(results):
    one, zero = results[1]["fails_on_rank_one"], results[0]["fails_on_rank_one"]
    assert one["error"] == "KeyError" and "missing on rank one" in one["message"]
    assert zero["error"] == "RankFailedError"
    assert (
        "the block failed on another rank (rank 1: KeyError: 'missing on rank one')"
        in zero["message"]
    )


def test_stack_across_ranks(results):
    expected = torch.tensor([[0.5, float("nan")], [1.5, float("nan")]])
    for rank in range(WORLD):
        torch.testing.assert_close(results[rank]["stack"]["value"], expected, equal_nan=True)


def test_without_process_group_everything_is_local(tmp_path):
    tensors = cases.rank_tensors(0, 3)
    assert distributed.gather_rows(*tensors) == tensors
    assert distributed.on_rank_zero_then_wait(lambda: 7) == 7
    with pytest.raises(KeyError), distributed.fail_together("x"):
        raise KeyError("local")
    flag = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(distributed.stack_across_ranks(flag), flag[None])


def test_no_reference_keeps_a_destroyed_group_alive(results):
    """A module-level strong reference to the group made processes abort at exit
    ("terminate called without an active exception") once in a few runs."""
    assert all(results[rank]["group_released"] for rank in range(WORLD))
