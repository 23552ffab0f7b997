"""Checks shared by every distance: blocked forms, and the Lp distances against loops."""

import pytest
import torch
from torch.testing import assert_close

from quaterion.distances import Cosine, Distance, DotProduct, Euclidean, Manhattan

from . import _naive


@pytest.mark.parametrize("name", ["cosine", "dot_product", "euclidean", "manhattan"])
@pytest.mark.parametrize("rows", [1, 7, 50])
def test_distance_matrix_blocks_match_per_block_matrices(name, rows):
    """Each block equals the matrix of its rows. Not bit for bit: BLAS may round a matmul over
    a row view of a larger tensor differently from one over a copy (AVX-512 kernels do)."""
    distance = Distance.get_by_name(name)
    x, y = torch.randn(50, 9), torch.randn(31, 9)
    blocks = [block.clone() for block in distance.distance_matrix_blocks(x, y, rows)]
    assert [b.shape[0] for b in blocks] == [min(rows, 50 - s) for s in range(0, 50, rows)]
    for start, block in zip(range(0, 50, rows), blocks):
        expected = distance.distance_matrix(x[start : start + rows].clone(), y)
        torch.testing.assert_close(block, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        torch.cat(blocks), distance.distance_matrix(x, y), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("distance, norm", [(Euclidean, _naive.l2), (Manhattan, _naive.l1)])
def test_lp_distances_against_naive(rand_xy, distance, norm):
    x, y = rand_xy
    dist = _naive.pairwise(norm, x, y)
    assert_close(distance.distance_matrix(x, y), dist)
    assert_close(distance.similarity_matrix(x, y), 1 / (1 + dist))
    # torch.pairwise_distance adds eps=1e-6 to the difference
    row = _naive.rowwise(norm, x[:4] + 1e-6, y)
    assert_close(distance.distance(x[:4], y), row)
    assert_close(distance.similarity(x[:4], y), 1 / (1 + row))
    assert_close(distance.distance_matrix(x), distance.distance_matrix(x, x))


@pytest.mark.parametrize("chunk_bytes", [4, 100, 2**20])
def test_blocked_cosine_transform_is_the_formula_bit_for_bit(monkeypatch, chunk_bytes):
    """The blocked path's two-pass chunked transform gives exactly ``1 - (p + 1) / 2`` (the
    formula of ``distance_matrix``) on the same product, for one row per chunk, a few rows,
    and the whole block at once."""
    from quaterion.distances import cosine

    monkeypatch.setattr(cosine, "_TRANSFORM_BYTES", chunk_bytes)
    generator = torch.Generator().manual_seed(0)
    product = torch.rand(37, 11, generator=generator, dtype=torch.float64).float() * 2 - 1
    product[0, :4] = torch.tensor([-1.0, 1.0, 0.0, 1e-8])
    expected = 1 - (product.clone() + 1) / 2
    got = cosine._distance_in_place(product.clone())
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("distance, norm", [(Euclidean, _naive.l2), (Manhattan, _naive.l1)])
def test_lp_distance_matrices_in_half_precision_on_cpu(distance, norm, dtype):
    # torch.cdist has no CPU kernel for these dtypes; the matrix comes back in the input's
    # dtype, close to the float32 loop, with gradients
    x = torch.randn(6, 5).to(dtype).requires_grad_(True)
    y = torch.randn(4, 5).to(dtype)
    matrix = distance.distance_matrix(x, y)
    assert matrix.dtype == dtype
    expected = _naive.pairwise(norm, x.detach().float(), y.float())
    assert_close(matrix.double(), expected, rtol=1e-2, atol=1e-2)
    matrix.sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()


_ALL = [Cosine, DotProduct, Euclidean, Manhattan]


@pytest.mark.parametrize("distance", _ALL)
@pytest.mark.parametrize("method", ["distance", "similarity"])
@pytest.mark.parametrize("other", [(5, 1), (5, 4), (5, 3, 1)])
def test_rowwise_forms_refuse_other_widths_instead_of_broadcasting(distance, method, other):
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=rf"{distance.__name__}\.{method}.*\(5, 3\)"):
        getattr(distance, method)(x, torch.randn(*other))


@pytest.mark.parametrize("distance", _ALL)
@pytest.mark.parametrize("method", ["distance_matrix", "similarity_matrix"])
@pytest.mark.parametrize("shapes", [((4, 3), (2, 5)), ((4,), (4,)), ((2, 4, 3), (2, 4, 3))])
def test_matrix_forms_refuse_other_widths_and_ranks(distance, method, shapes):
    x, y = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(ValueError, match=rf"{distance.__name__}\.{method}.*{tuple(x.shape)}"):
        getattr(distance, method)(x, y)


@pytest.mark.parametrize("distance", _ALL)
def test_matrix_blocks_refuse_other_widths(distance):
    with pytest.raises(ValueError, match="distance_matrix"):
        list(distance.distance_matrix_blocks(torch.randn(4, 3), torch.randn(2, 5), 2))


@pytest.mark.parametrize("distance", _ALL)
def test_rowwise_forms_still_broadcast_one_row(distance, rand_xy):
    # upstream's torch functions broadcast a single row against a batch: kept
    x, y = rand_xy
    assert_close(distance.distance(x, y[:1]), distance.distance(x, y[:1].expand(5, 3)))


@pytest.mark.parametrize("distance", _ALL)
@pytest.mark.parametrize("block_rows", [0, -1])
def test_matrix_blocks_refuse_block_rows_below_one(distance, block_rows):
    # -1 yielded no block at all (a negative range step), silently
    with pytest.raises(ValueError, match=f"block_rows must be a positive int, got {block_rows}"):
        list(distance.distance_matrix_blocks(torch.randn(3, 2), torch.randn(2, 2), block_rows))


@pytest.mark.parametrize("distance", _ALL)
def test_matrix_blocks_refuse_a_float_block_rows(distance):
    with pytest.raises(TypeError, match="block_rows must be a positive int"):
        list(distance.distance_matrix_blocks(torch.randn(3, 2), torch.randn(2, 2), 2.0))
