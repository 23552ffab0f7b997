"""Data of losses.md §9 item 1 and random float64 inputs."""

import pytest
import torch


@pytest.fixture
def spec_x() -> torch.Tensor:
    """``x``: float32 (2, 4); row 1 is ``-row 0``."""
    return torch.tensor([[1.0, -1.5, 2.0, -3.0], [-1.0, 1.5, -2.0, 3.0]])


@pytest.fixture
def rand_xy() -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 matrices (5, 3) and (4, 3)."""
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(5, 3, generator=gen, dtype=torch.float64),
        torch.randn(4, 3, generator=gen, dtype=torch.float64),
    )
