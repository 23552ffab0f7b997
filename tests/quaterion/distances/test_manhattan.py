from unittest import mock

import pytest
import torch
from torch.testing import assert_close

from quaterion.distances import Manhattan
from quaterion.distances.manhattan import manhattan_distance_matrix

from . import _naive


def test_spec_values(spec_x):
    assert_close(Manhattan.distance_matrix(spec_x), torch.tensor([[0.0, 15.0], [15.0, 0.0]]))
    assert_close(Manhattan.similarity_matrix(spec_x), torch.tensor([[1.0, 0.0625], [0.0625, 1.0]]))
    assert_close(Manhattan.distance(spec_x, spec_x.flip(0)), torch.tensor([15.0, 15.0]))


def test_matrix_never_broadcasts_to_b1_b2_d(rand_xy):
    """No intermediate of the matrix form has three dims (B1 x B2 x d)."""
    x, y = rand_xy
    x.requires_grad_(True)
    shapes = []

    class Recorder(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                shapes.append(tuple(out.shape))
            return out

    with Recorder():
        Manhattan.distance_matrix(x, y).sum().backward()
    assert shapes and all(len(s) <= 2 for s in shapes), shapes


@pytest.mark.parametrize("b1, b2", [(2048, 2048)])
def test_large_matrix_runs_with_gradient(b1, b2):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b1, 128, generator=gen, requires_grad=True)
    y = torch.randn(b2, 128, generator=gen)
    dist = Manhattan.distance_matrix(x, y)
    assert dist.shape == (b1, b2)
    dist.sum().backward()
    # d/dx_ik sum_j |x_ik - y_jk| = sum_j sign(x_ik - y_jk): check one row exactly
    expected_row = torch.sign(x[0].detach() - y).sum(dim=0)
    assert_close(x.grad[0], expected_row)


@pytest.mark.parametrize("chunk_size", [1, 3, 5, None])
def test_chunked_equals_unchunked_values_and_gradients(rand_xy, chunk_size):
    x, y = rand_xy
    x1, y1 = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    x2, y2 = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    weights = torch.arange(20, dtype=torch.float64).reshape(5, 4)
    got = manhattan_distance_matrix(x1, y1, chunk_size=chunk_size)
    (got * weights).sum().backward()
    expected = _naive.pairwise(_naive.l1, x, y)
    (torch.cdist(x2, y2, p=1) * weights).sum().backward()
    assert_close(got, expected)
    assert_close(x1.grad, x2.grad)
    assert_close(y1.grad, y2.grad)


def test_cdist_calls_are_bounded_by_chunk(rand_xy):
    x, y = rand_xy
    seen = []
    real_cdist = torch.cdist

    def spy(a, b, p=2.0, **kwargs):
        seen.append(a.shape[0])
        return real_cdist(a, b, p=p, **kwargs)

    with mock.patch("torch.cdist", spy):
        manhattan_distance_matrix(x, y, chunk_size=2)
    assert seen == [2, 2, 1]
