"""``argparse`` value types of the examples' options: a bad value stops at parse time with
``argument --name: ...`` instead of failing deep inside a library (or silently training
nothing, as ``--epochs 0`` would)."""

import argparse
import math

#: Seeds are handed to ``pytorch_lightning.seed_everything``, which takes ``[0, 2**32 - 1]``
#: (outside it picks a random seed with a warning: the run would not be reproducible).
MAX_SEED = 2**32 - 1


def _int(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer ``>= 1`` (counts, sizes, epochs)."""
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer ``>= 0``."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def random_seed(text: str) -> int:
    """A random seed in ``[0, 2**32 - 1]``."""
    value = _int(text, f"an integer seed in [0, {MAX_SEED}]")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a seed in [0, {MAX_SEED}], got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number ``> 0`` (learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0.0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value
