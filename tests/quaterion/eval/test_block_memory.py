"""Exact evaluation holds one distance block at a time, the last shorter block included."""

import pytest
import torch

from quaterion.distances import Distance


@pytest.mark.parametrize("name", [Distance.COSINE, Distance.DOT_PRODUCT])
def test_every_block_is_written_into_one_buffer(name):
    distance = Distance.get_by_name(name)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(25, 8, generator=generator), torch.randn(30, 8, generator=generator)
    storages, rows = set(), []
    for block in distance.distance_matrix_blocks(x, y, 10):
        storages.add(block.untyped_storage().data_ptr())
        rows.append(block.clone())
    assert [r.shape[0] for r in rows] == [10, 10, 5]
    assert len(storages) == 1  # 25 rows in blocks of 10: the last 5 reuse the buffer
    torch.testing.assert_close(torch.cat(rows), distance.distance_matrix(x, y))
