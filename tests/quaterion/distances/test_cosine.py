import torch
from torch.testing import assert_close

from quaterion.distances import Cosine

from . import _naive


def test_spec_values(spec_x):
    assert_close(Cosine.distance_matrix(spec_x), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.allclose(
        Cosine.similarity_matrix(spec_x), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), atol=3e-8
    )
    assert_close(Cosine.distance(spec_x, spec_x.flip(0)), torch.tensor([2.0, 2.0]))
    assert_close(Cosine.similarity(spec_x, spec_x.flip(0)), torch.tensor([-1.0, -1.0]))


def test_matrix_and_rowwise_scales_against_naive(rand_xy):
    x, y = rand_xy
    cos = _naive.pairwise(_naive.cos, x, y)
    assert_close(Cosine.similarity_matrix(x, y), (cos + 1) / 2)
    assert_close(Cosine.distance_matrix(x, y), (1 - cos) / 2)
    row_cos = _naive.rowwise(_naive.cos, x[:4], y)
    assert_close(Cosine.similarity(x[:4], y), row_cos)
    assert_close(Cosine.distance(x[:4], y), 1 - row_cos)


def test_y_none_means_x(rand_xy):
    x, _ = rand_xy
    assert_close(Cosine.distance_matrix(x), Cosine.distance_matrix(x, x))
    assert_close(Cosine.similarity_matrix(x), Cosine.similarity_matrix(x, x))


def test_rowwise_float16_with_a_zero_row_is_finite(rand_xy):
    # eps 1e-8 rounds to 0 in float16: torch's own float16 kernel gives 0/0 = NaN
    x, y = rand_xy
    x = x[:4].clone()
    x[1] = 0.0
    half_x, half_y = x.half(), y.half()
    similarity = Cosine.similarity(half_x, half_y)
    assert similarity.dtype == torch.float16
    expected = _naive.rowwise(lambda a, b: _naive.cos(a, b) if any(a) else 0.0, x, y)
    assert_close(similarity.double(), expected, rtol=2e-3, atol=2e-3)
    assert_close(Cosine.distance(half_x, half_y).double(), 1 - expected, rtol=2e-3, atol=2e-3)
