"""The device path's headers and messages, and ``gather_rows``' argument checks, in one
process (no collectives)."""

import pytest
import torch

from quaterion import distributed
from quaterion._device_gather import OTHER_LAYOUT, describe_headers, header_of


@pytest.mark.parametrize(
    "rows, same, expected",
    [(4, True, 4), (0, True, 0), (6, True, -8), (6, False, OTHER_LAYOUT), (-1, True, -1)],
)
def test_header_of(rows, same, expected):
    assert header_of(rows, same, capacity=4) == expected


def test_describe_headers_names_every_rank():
    text = describe_headers([4, -8, OTHER_LAYOUT], capacity=4)
    assert text.splitlines() == [
        "  rank 0: 4 rows",
        "  rank 1: 6 rows, more than the 4 rows agreed for this call",
        "  rank 2: another layout (tensor count, dtype, trailing shape, requires_grad or device)",
    ]


def test_without_process_group_equal_rows_changes_nothing():
    tensors = (torch.randn(3, 2), torch.arange(3))
    assert distributed.gather_rows(*tensors, equal_rows=True) == tensors
    distributed.raise_pending_gather_errors()  # nothing queued, nothing to wait for


def test_equal_rows_must_be_a_bool():
    with pytest.raises(TypeError, match="equal_rows must be True or False, got 'yes'"):
        distributed.gather_rows(torch.zeros(2, 1), equal_rows="yes")


def test_without_process_group_gather_rows_padded_returns_the_inputs_all_real():
    embeddings, labels = torch.randn(3, 2), torch.arange(3)
    (rows, row_labels), valid = distributed.gather_rows_padded(embeddings, labels)
    assert rows is embeddings and row_labels is labels
    assert valid.dtype == torch.bool and valid.tolist() == [True, True, True]
    gathered = distributed.gather_rows_padded(torch.zeros(0, 4))
    assert isinstance(gathered, distributed.PaddedRows) and gathered.valid.shape == (0,)


@pytest.mark.parametrize(
    "tensors, message",
    [
        ((), "needs at least one tensor"),
        (([1.0, 2.0],), "must be tensors"),
        ((torch.zeros(3, 2), torch.zeros(2)), "the same number of rows"),
        ((torch.tensor(1.0),), "a row dimension"),
    ],
)
def test_gather_rows_padded_rejects_bad_input(tensors, message):
    with pytest.raises(ValueError, match=message):
        distributed.gather_rows_padded(*tensors)


@pytest.mark.parametrize(
    "tensors, message",
    [(([1.0, 2.0],), "must be tensors"), ((torch.tensor(1.0),), "a row dimension")],
)
def test_gather_rows_rejects_what_a_process_group_would_in_one_process(tensors, message):
    # a process group refuses these; one process used to hand them back unchanged
    with pytest.raises(ValueError, match=f"gather_rows: .*{message}"):
        distributed.gather_rows(*tensors)
