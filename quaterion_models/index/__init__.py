"""Search with a trained servable: a Qdrant index bound to a ``SimilarityModel``.

An optional extra (``pip install 'quaterion[qdrant]'``): the embedded backend needs
``qdrant-edge-py``, the server backend ``qdrant-client``; each is imported only when used.
Nothing here imports Lightning or ``quaterion``.
"""

from quaterion_models.index.backend import Backend, Hit, QueryOptions
from quaterion_models.index.errors import (
    IndexConfigError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    ServerUnreachableError,
    SimilarityIndexError,
)
from quaterion_models.index.fingerprint import servable_fingerprint
from quaterion_models.index.metadata import HnswParams, IndexInfo
from quaterion_models.index.similarity_index import SimilarityIndex

__all__ = [
    "SimilarityIndex",
    "Hit",
    "Backend",
    "QueryOptions",
    "HnswParams",
    "IndexInfo",
    "servable_fingerprint",
    "SimilarityIndexError",
    "IndexNotFoundError",
    "IndexLockedError",
    "IndexConfigError",
    "ModelMismatchError",
    "ServerUnreachableError",
]
