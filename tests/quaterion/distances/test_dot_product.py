import torch
from torch.testing import assert_close

from quaterion.distances import DotProduct

from . import _naive


def test_spec_values(spec_x):
    expected = torch.tensor([[16.25, -16.25], [-16.25, 16.25]])
    assert torch.allclose(DotProduct.similarity_matrix(spec_x), expected, atol=3e-8)
    assert torch.allclose(DotProduct.distance_matrix(spec_x), -expected, atol=3e-8)


def test_against_naive(rand_xy):
    x, y = rand_xy
    dots = _naive.pairwise(_naive.dot, x, y)
    assert_close(DotProduct.similarity_matrix(x, y), dots)
    assert_close(DotProduct.distance_matrix(x, y), -dots)
    row = _naive.rowwise(_naive.dot, x[:4], y)
    assert_close(DotProduct.similarity(x[:4], y), row)
    assert_close(DotProduct.distance(x[:4], y), -row)
    assert_close(DotProduct.distance_matrix(x), DotProduct.distance_matrix(x, x))
