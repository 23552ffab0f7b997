"""``smallest_values``: the integer-keyed top-k equals ``torch.topk`` on every kind of row."""

import pytest
import torch

from quaterion.eval._ranking import smallest_values


def rows_with_every_kind_of_value() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    dist = torch.rand(9, 40, generator=generator)
    dist[1, 5] = -1e-7  # a cosine distance rounded just below 0
    dist[2, 7] = -0.0
    dist[3, :10] = float("inf")  # own items ranked last
    dist[4, 3] = float("nan")
    dist[5, 8] = -float("nan")  # NaN with the sign bit set
    dist[6, :] = 0.25  # one tie over the whole row
    dist[7, ::2] = 0.0
    dist[8, :] = torch.linspace(-1, 1, 40)  # a negative distance (dot product)
    return dist


@pytest.mark.parametrize("width", [1, 3, 40])
def test_smallest_values_equal_topk(width):
    dist = rows_with_every_kind_of_value()
    expected = torch.topk(dist, width, dim=1, largest=False, sorted=True).values
    got = smallest_values(dist, width)
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


def test_smallest_values_of_a_row_view_and_other_dtypes():
    dist = rows_with_every_kind_of_value()
    view = dist[2:6, 1:]  # not contiguous
    expected = torch.topk(view, 4, dim=1, largest=False, sorted=True).values
    torch.testing.assert_close(smallest_values(view, 4), expected, rtol=0, atol=0, equal_nan=True)
    double = dist.double()
    expected = torch.topk(double, 4, dim=1, largest=False, sorted=True).values
    torch.testing.assert_close(smallest_values(double, 4), expected, rtol=0, atol=0, equal_nan=True)
