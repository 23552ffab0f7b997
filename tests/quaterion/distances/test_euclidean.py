import torch
from torch.testing import assert_close

from quaterion.distances import Euclidean


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
