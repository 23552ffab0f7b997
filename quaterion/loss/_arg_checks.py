"""Constructor-argument checks shared by the losses (``ValueError``/``TypeError`` naming the arg)."""

import math
from numbers import Real
from typing import Optional


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    minimum: Optional[float] = None,
    strict: bool = False,
) -> float:
    """Return ``float(value)`` after checking it is a finite real number above ``minimum``.

    Args:
        owner: class name used in the message.
        name: argument name used in the message.
        value: the value received.
        minimum: lower bound, ``None`` for none.
        strict: ``True`` means ``value > minimum``, ``False`` means ``value >= minimum``.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` and ``None`` included).
        ValueError: ``value`` is not finite or is below the bound.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{owner}: {name} must be a real number, got {value!r} "
            f"({type(value).__name__}). Pass a float, e.g. {name}=1.0."
        )
    number = float(value)
    bound_ok = minimum is None or (number > minimum if strict else number >= minimum)
    if not math.isfinite(number) or not bound_ok:
        allowed = "a finite number"
        if minimum is not None:
            allowed += f" {'>' if strict else '>='} {minimum}"
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}.")
    return number


def check_positive_int(owner: str, name: str, value: object) -> int:
    """Return ``value`` after checking it is an ``int`` (not ``bool``) ``>= 1``.

    Raises:
        TypeError: ``value`` is not an integer.
        ValueError: ``value < 1``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{owner}: {name} must be an int >= 1, got {value!r} ({type(value).__name__})."
        )
    if value < 1:
        raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}.")
    return value
