"""Validation and conversion of batch labels (private; used by the data loaders)."""

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for error messages."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_sample_types(samples: Sequence[Any], expected: type, loader: str, hint: str) -> None:
    """Raise ``TypeError`` naming ``expected`` and the first item of another type."""
    for position, sample in enumerate(samples):
        if not isinstance(sample, expected):
            shown = short_repr(sample)
            if isinstance(sample, Mapping):
                hint = (
                    f"For dict rows (e.g. a Hugging Face dataset), write a Dataset whose "
                    f"__getitem__ builds a {expected.__name__} from the row's fields. {hint}"
                )
            raise TypeError(
                f"{loader} expects dataset items of type {expected.__name__}, but item "
                f"{position} of the batch is a {type(sample).__name__}: {shown}. {hint}"
            )


def as_int_list(
    values: Sequence[Any], field: str, exact_in: Optional[torch.dtype] = None
) -> list[int]:
    """Python ints from ints, numpy integers or 0-d integer tensors; ``TypeError`` otherwise.

    Every value must fit in int64; with ``exact_in`` (a float dtype the ids are stored in) it
    must also be exactly representable there, else two ids could silently become equal.
    ``ValueError`` names the sample and the value otherwise.
    """
    try:
        ints = [operator.index(value) for value in values]
    except TypeError:
        ints = None
    if ints is not None:
        _check_int_range(ints, field, exact_in)
        return ints
    for position, value in enumerate(values):
        try:
            operator.index(value)
        except TypeError:
            raise TypeError(
                f"`{field}` must be an integer (int, numpy integer or 0-d integer tensor), but "
                f"sample {position} of the batch has {field}={value!r} "
                f"({type(value).__name__}). Map labels to integer ids first, e.g. with "
                "{label: i for i, label in enumerate(sorted(set(labels)))}."
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _check_int_range(ints: list[int], field: str, exact_in: Optional[torch.dtype]) -> None:
    low, high = _INT64_MIN, _INT64_MAX
    where = "int64"
    if exact_in is not None:
        limit = 2 ** _mantissa_bits(exact_in)
        low, high = max(low, -limit), min(high, limit)
        where = f"{exact_in} (the dtype `{field}` is stored in), i.e. within +-{limit}"
    for position, value in enumerate(ints):
        if not low <= value <= high:
            raise ValueError(
                f"`{field}` must be an integer that fits {where}, but sample {position} of the "
                f"batch has {field}={value}. Map ids to small integers first, e.g. with "
                "{label: i for i, label in enumerate(sorted(set(labels)))}."
            )


def _mantissa_bits(dtype: torch.dtype) -> int:
    """Integers up to ``2 ** bits`` are exact in ``dtype`` (24 for float32, 53 for float64)."""
    return 1 - int(math.log2(torch.finfo(dtype).eps))


def as_float_tensor(values: Sequence[Any], field: str) -> torch.Tensor:
    """1-D tensor of the default float dtype; ``TypeError`` naming a non-numeric value."""
    bad = next((v for v in values if isinstance(v, (str, bytes))), None)
    try:
        tensor = None if bad is not None else torch.tensor(values, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if tensor is None or tensor.dim() != 1:
        offender = bad
        if offender is None:
            offender = next((v for v in values if not _is_real_scalar(v)), values)
        raise TypeError(
            f"`{field}` must be a real number per sample, got {offender!r} "
            f"({type(offender).__name__}). Use a float such as 1.0 (similar) or 0.0 (unrelated)."
        )
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        position = int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"`{field}` must be a finite number, but sample {position} of the batch has "
            f"{field}={values[position]!r}. Fix or drop that sample; scores are usually 1.0 "
            "(similar) and 0.0 (unrelated)."
        )
    return tensor


def _is_real_scalar(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True
