import pytest
import torch
from torch.testing import assert_close

from quaterion.distances import Manhattan

from . import _naive


def test_spec_values(spec_x):
    assert_close(Manhattan.distance_matrix(spec_x), torch.tensor([[0.0, 15.0], [15.0, 0.0]]))
    assert_close(
        Manhattan.similarity_matrix(spec_x), torch.tensor([[1.0, 0.0625], [0.0625, 1.0]])
    )
    assert_close(Manhattan.distance(spec_x, spec_x.flip(0)), torch.tensor([15.0, 15.0]))


def test_against_naive(rand_xy):
    x, y = rand_xy
    dist = _naive.pairwise(_naive.l1, x, y)
    assert_close(Manhattan.distance_matrix(x, y), dist)
    assert_close(Manhattan.similarity_matrix(x, y), 1 / (1 + dist))
    row = _naive.rowwise(_naive.l1, x[:4] + 1e-6, y)
    assert_close(Manhattan.distance(x[:4], y), row)
    assert_close(Manhattan.similarity(x[:4], y), 1 / (1 + row))
    assert_close(Manhattan.distance_matrix(x), Manhattan.distance_matrix(x, x))


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
