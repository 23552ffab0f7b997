import torch
from torch.testing import assert_close

from quaterion.distances import Euclidean

from . import _naive


def test_spec_values(spec_x):
    assert_close(
        Euclidean.distance_matrix(spec_x),
        torch.tensor([[0.0, 8.0623], [8.0623, 0.0]]),
        rtol=1e-4,
        atol=1e-6,
    )
    assert_close(
        Euclidean.similarity_matrix(spec_x),
        torch.tensor([[1.0, 0.1103477], [0.1103477, 1.0]]),
        rtol=1e-4,
        atol=1e-6,
    )
    assert_close(
        Euclidean.distance(spec_x, spec_x.flip(0)),
        torch.tensor([8.0623, 8.0623]),
        rtol=1e-4,
        atol=0,
    )


def test_against_naive(rand_xy):
    x, y = rand_xy
    dist = _naive.pairwise(_naive.l2, x, y)
    assert_close(Euclidean.distance_matrix(x, y), dist)
    assert_close(Euclidean.similarity_matrix(x, y), 1 / (1 + dist))
    # torch.pairwise_distance adds eps=1e-6 to the difference
    row = _naive.rowwise(_naive.l2, x[:4] + 1e-6, y)
    assert_close(Euclidean.distance(x[:4], y), row)
    assert_close(Euclidean.similarity(x[:4], y), 1 / (1 + row))
    assert_close(Euclidean.distance_matrix(x), Euclidean.distance_matrix(x, x))
