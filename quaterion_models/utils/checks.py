"""Argument checks shared by heads and encoders: errors name the owner, argument, value and fix."""

import math
from numbers import Integral, Real
from typing import Any

import numpy as np


def check_positive_int(owner: str, name: str, value: Any, hint: str = "") -> int:
    """Return ``value`` if it is an ``int >= 1`` (bools excluded), else raise.

    Raises:
        TypeError: ``value`` is not an integer.
        ValueError: ``value`` is zero or negative.
    """
    fix = hint or "pass a positive integer"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(
            f"{owner}: `{name}` must be a positive int, got {type(value).__name__} {value!r}; {fix}"
        )
    if value < 1:
        raise ValueError(f"{owner}: `{name}` must be a positive int (>= 1), got {value!r}; {fix}")
    return int(value)


def check_probability(owner: str, name: str, value: Any) -> float:
    """Return ``value`` if it is a real number in ``[0, 1)``, else raise.

    ``1.0`` is refused too: dropping everything zeroes the embedding.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is outside ``[0, 1)`` or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{owner}: `{name}` must be a float in [0, 1), got {type(value).__name__} "
            f"{value!r}; e.g. {name}=0.1, or 0.0 to disable it"
        )
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"{owner}: `{name}` must be in [0, 1), got {value!r}; it is a probability of "
            f"zeroing each value: use e.g. {name}=0.1, or 0.0 to disable it"
        )
    return float(value)


def check_positive_float(owner: str, name: str, value: Any) -> float:
    """Return ``value`` if it is a finite real number ``> 0``, else raise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{owner}: `{name}` must be a positive float, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: `{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def check_options(owner: str, options: Any, base: type, fix: str) -> dict:
    """Return ``options`` if it is a non-empty ``{key: base instance}`` dict, else raise.

    Raises:
        ValueError: ``options`` is not a dict or is empty.
        TypeError: an option is not an instance of ``base`` (the key is named).
    """
    if not isinstance(options, dict) or not options:
        raise ValueError(
            f"{owner}: `options` must be a non-empty dict {{key: {base.__name__}}}, got "
            f"{options!r}; {fix}"
        )
    for key, option in options.items():
        if not isinstance(option, base):
            raise TypeError(
                f"{owner}: option {key!r} must be an {base.__name__}, got "
                f"{type(option).__name__}; {fix}"
            )
    return options


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` if it is a real ``bool`` (``numpy.bool_`` included), else ``TypeError``.

    Strings such as ``"false"`` are truthy, so accepting them would silently flip a flag.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(
        f"{owner}: `{name}` must be True or False, got {type(value).__name__} {value!r}; "
        f"pass a bool, e.g. {name}=True"
    )
