"""Shared data of losses.md §9 (embeddings E, groups G, kernel K, pairs), as constants for
module-level tables and as fixtures (fresh copies) for tests."""

import pytest
import torch

E = torch.tensor(  # float32 (6, 3)
    [
        [0.0, -1.0, 0.5],
        [0.1, 2.0, 0.5],
        [0.0, 0.3, 0.2],
        [1.0, 0.0, 0.9],
        [1.2, -1.2, 0.01],
        [-0.7, 0.0, 1.5],
    ]
)
G = torch.tensor([1, 2, 3, 3, 2, 1])  # int64 (6,)
K = torch.tensor(  # float32 (3, 4)
    [[0.1, -0.2, 0.3, 0.0], [0.5, 0.1, -0.4, 0.2], [-0.3, 0.6, 0.2, 0.1]]
)
PAIRS = torch.tensor([[0, 3], [1, 4], [2, 5]])  # int64 (3, 2)


def _fresh_copy_fixture(value: torch.Tensor):
    """A fixture handing each test its own copy of ``value``."""

    @pytest.fixture
    def fixture() -> torch.Tensor:
        return value.clone()

    return fixture


spec_embeddings = _fresh_copy_fixture(E)
spec_groups = _fresh_copy_fixture(G)
spec_kernel = _fresh_copy_fixture(K)
spec_pairs = _fresh_copy_fixture(PAIRS)
