import torch
from torch.testing import assert_close

from quaterion.utils import l2_norm


def test_default_dim_is_zero():
    x = torch.tensor([[3.0, 1.0], [4.0, 0.0]])
    assert_close(l2_norm(x), torch.tensor([[0.6, 1.0], [0.8, 0.0]]))
    assert_close(l2_norm(x, dim=1), x / x.norm(dim=1, keepdim=True))


def test_zero_vector_stays_zero():
    assert torch.equal(l2_norm(torch.zeros(3)), torch.zeros(3))
