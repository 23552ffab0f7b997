import pytest
import torch

from quaterion.distances import Distance


@pytest.mark.parametrize("name", ["cosine", "dot_product", "euclidean", "manhattan"])
@pytest.mark.parametrize("rows", [1, 7, 50])
def test_distance_matrix_blocks_equal_per_block_matrices_bit_for_bit(name, rows):
    distance = Distance.get_by_name(name)
    x, y = torch.randn(50, 9), torch.randn(31, 9)
    blocks = [block.clone() for block in distance.distance_matrix_blocks(x, y, rows)]
    assert [b.shape[0] for b in blocks] == [min(rows, 50 - s) for s in range(0, 50, rows)]
    for start, block in zip(range(0, 50, rows), blocks):
        assert torch.equal(block, distance.distance_matrix(x[start : start + rows], y))
    torch.testing.assert_close(torch.cat(blocks), distance.distance_matrix(x, y))
