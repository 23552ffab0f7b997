import torch
from torch.testing import assert_close

from quaterion.utils import l2_norm


def test_default_dim_is_zero():
    x = torch.tensor([[3.0, 1.0], [4.0, 0.0]])
    assert_close(l2_norm(x), torch.tensor([[0.6, 1.0], [0.8, 0.0]]))
    assert_close(l2_norm(x, dim=1), x / x.norm(dim=1, keepdim=True))


def test_zero_vector_stays_zero():
    assert torch.equal(l2_norm(torch.zeros(3)), torch.zeros(3))


def test_zero_rows_stay_zero_in_float16():
    # F.normalize's default eps (1e-12) rounds to 0 in float16: 0 / 0 would be NaN
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float16)
    out = l2_norm(x, dim=1)
    assert torch.isfinite(out).all()
    assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 0.0]], dtype=torch.float16))
