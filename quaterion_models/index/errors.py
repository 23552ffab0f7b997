"""Errors raised by :mod:`quaterion_models.index`; each names the problem and the fix."""


class SimilarityIndexError(Exception):
    """Base class of every index error."""


class IndexNotFoundError(SimilarityIndexError, FileNotFoundError):
    """The index to open does not exist (missing directory or collection)."""


class IndexLockedError(SimilarityIndexError, RuntimeError):
    """The embedded index is already open (one open handle per directory)."""


class IndexConfigError(SimilarityIndexError, ValueError):
    """Dimension or distance of the stored index differ from the requested ones."""


class ModelMismatchError(SimilarityIndexError, ValueError):
    """The index was built by a different servable than the one opening it."""


class ServerUnreachableError(SimilarityIndexError, ConnectionError):
    """The Qdrant server did not answer."""


def missing_extra(what: str, package: str) -> ImportError:
    """The error for a backend whose optional package is not installed."""
    return ImportError(
        f"{what} needs {package}: pip install 'quaterion[qdrant]' (or pip install {package})"
    )
