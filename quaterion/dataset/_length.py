"""Length of a wrapped dataset (private helper shared by the dataset layers)."""

from collections.abc import Sized
from typing import Any


class UnknownLengthError(NotImplementedError, TypeError):
    """``len()`` of a layer over an unsized dataset.

    A ``NotImplementedError`` as the spec asks, and also a ``TypeError`` so that
    ``list(...)`` and ``operator.length_hint`` treat the layer as having no length.
    """


def sized_len(dataset: Any) -> int:
    """``len(dataset)``, or :class:`UnknownLengthError` if it has no ``__len__``."""
    if isinstance(dataset, Sized):
        return len(dataset)
    raise UnknownLengthError(
        f"The wrapped dataset {type(dataset).__name__} has no __len__, so its length is unknown."
    )
