"""Whether the current load may unpickle code: set by ``SimilarityModel.load(trusted=...)``.

Loaders of heads and encoders whose files are pickles (``SequentialHead`` with layers outside
the allowlist, gensim models) consult :func:`is_loading_trusted` instead of taking a new
argument, so ``load(input_path)`` keeps its signature for user-defined classes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Optional

from quaterion_models.utils.checks import check_bool

_TRUSTED: ContextVar[bool] = ContextVar("quaterion_models_trusted_loading", default=False)


@contextmanager
def trusted_loading(trusted: bool = True) -> Iterator[None]:
    """Within the block, loaders may (``True``) or may not (``False``) unpickle code."""
    token = _TRUSTED.set(check_bool("trusted_loading", "trusted", trusted))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def is_loading_trusted(trusted: Optional[bool] = None) -> bool:
    """``trusted`` if given, else the value set by the enclosing :func:`trusted_loading`.

    Outside any ``trusted_loading`` block loading is untrusted.
    """
    if trusted is None:
        return _TRUSTED.get()
    return check_bool("is_loading_trusted", "trusted", trusted)
