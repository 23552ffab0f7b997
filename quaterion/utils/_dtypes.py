"""Numeric limits of torch dtypes."""

from typing import Union

import torch


def info_value_of_dtype(dtype: torch.dtype) -> Union[torch.finfo, torch.iinfo]:
    """Return ``torch.finfo`` for floating dtypes and ``torch.iinfo`` for integer ones.

    Raises:
        TypeError: for ``torch.bool``, which has no numeric limits.
    """
    if dtype == torch.bool:
        raise TypeError("Does not support torch.bool")
    if dtype.is_floating_point:
        return torch.finfo(dtype)
    return torch.iinfo(dtype)


def min_value_of_dtype(dtype: torch.dtype) -> Union[int, float]:
    """Smallest finite value representable by ``dtype`` (``finfo.min`` / ``iinfo.min``)."""
    return info_value_of_dtype(dtype).min


def max_value_of_dtype(dtype: torch.dtype) -> Union[int, float]:
    """Largest finite value representable by ``dtype`` (``finfo.max`` / ``iinfo.max``)."""
    return info_value_of_dtype(dtype).max
