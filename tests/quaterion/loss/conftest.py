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


@pytest.fixture
def spec_embeddings() -> torch.Tensor:
    """``E``: float32 (6, 3)."""
    return E.clone()


@pytest.fixture
def spec_groups() -> torch.Tensor:
    """``G``: int64 (6,)."""
    return G.clone()


@pytest.fixture
def spec_kernel() -> torch.Tensor:
    """``K``: float32 (3, 4)."""
    return K.clone()


@pytest.fixture
def spec_pairs() -> torch.Tensor:
    """Pairs ``[[0, 3], [1, 4], [2, 5]]``: int64 (3, 2)."""
    return PAIRS.clone()
