import pytest
import torch

from quaterion.distances import BaseDistance


@pytest.mark.parametrize("method", ["distance", "similarity"])
def test_rowwise_methods_are_abstract(method):
    x = torch.zeros(2, 3)
    with pytest.raises(NotImplementedError):
        getattr(BaseDistance, method)(x, x)


@pytest.mark.parametrize("method", ["distance_matrix", "similarity_matrix"])
def test_matrix_methods_are_abstract(method):
    with pytest.raises(NotImplementedError):
        getattr(BaseDistance, method)(torch.zeros(2, 3))
