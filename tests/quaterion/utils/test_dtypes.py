import pytest
import torch

from quaterion.utils import info_value_of_dtype, max_value_of_dtype, min_value_of_dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_float_bounds(dtype):
    assert info_value_of_dtype(dtype) == torch.finfo(dtype)
    assert max_value_of_dtype(dtype) == torch.finfo(dtype).max
    assert min_value_of_dtype(dtype) == torch.finfo(dtype).min


@pytest.mark.parametrize(
    "dtype, lo, hi",
    [(torch.int8, -128, 127), (torch.uint8, 0, 255), (torch.int64, -(2**63), 2**63 - 1)],
)
def test_int_bounds(dtype, lo, hi):
    assert min_value_of_dtype(dtype) == lo
    assert max_value_of_dtype(dtype) == hi


@pytest.mark.parametrize("fn", [info_value_of_dtype, min_value_of_dtype, max_value_of_dtype])
def test_bool_raises(fn):
    with pytest.raises(TypeError, match="Does not support torch.bool"):
        fn(torch.bool)
