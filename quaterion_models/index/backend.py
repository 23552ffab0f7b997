"""What both backends implement, and the search hit they return."""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from quaterion_models.index.metadata import IndexInfo

#: A point id: a non-negative int or a UUID string (what Qdrant accepts).
PointId = Union[int, str]


class Hit(NamedTuple):
    """One search result: point ``id``, Qdrant ``score`` and stored ``payload``.

    ``score`` is a similarity (higher is closer) for cosine and dot product, and a
    distance (lower is closer) for Euclidean and Manhattan, as Qdrant reports it.
    """

    id: PointId
    score: float
    payload: Optional[dict[str, Any]]


class QueryOptions(NamedTuple):
    """How to search: hits per query, filter, exhaustive or HNSW beam width, payloads."""

    limit: int
    filter: Any = None
    exact: bool = False
    hnsw_ef: Optional[int] = None
    with_payload: bool = True


def normalise_id(point_id: Any) -> PointId:
    """Ids come back as int, str or ``uuid.UUID``: return int or str."""
    return point_id if isinstance(point_id, int) else str(point_id)


def filter_items(filter: Mapping[str, Any], native: str) -> list[tuple[str, bool, Any]]:
    """``{key: value | [values]}`` -> ``[(key, is_any, value)]``, checking value types.

    ``native`` names the backend's own filter class in the error for a non-mapping.
    """
    if not isinstance(filter, Mapping):
        raise TypeError(
            f"filter must be a dict {{field: value or [values]}} or a {native}, got "
            f"{type(filter).__name__}"
        )
    items = []
    for key, value in filter.items():
        if isinstance(value, (list, tuple, set)):
            values = list(value)
            if not values or not all(isinstance(v, (str, int)) for v in values):
                raise TypeError(
                    f"filter[{key!r}]: a list filter needs a non-empty list of str or int values, "
                    f"got {value!r}"
                )
            items.append((key, True, values))
        elif isinstance(value, (str, int, bool)):
            items.append((key, False, value))
        else:
            raise TypeError(
                f"filter[{key!r}] must be a str, int or bool (exact match) or a list of them "
                f"(any of), got {type(value).__name__}; pass a native Qdrant Filter for ranges"
            )
    return items


class Backend:
    """Storage behind a :class:`~quaterion_models.index.SimilarityIndex`.

    ``location`` names it in messages. ``load_info`` returns ``None`` when nothing is stored
    there yet; ``create`` makes an empty index recording ``info``; ``drop`` removes it.
    """

    location: str

    def load_info(self) -> Optional[IndexInfo]:
        raise NotImplementedError

    def create(self, info: IndexInfo) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def upsert(
        self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[Optional[dict]]
    ) -> None:
        """Write one batch and return only once it is durable."""
        raise NotImplementedError

    def query(self, vectors: np.ndarray, options: QueryOptions) -> list[list[Hit]]:
        raise NotImplementedError

    def count(self, filter: Any) -> int:
        raise NotImplementedError

    def delete(self, ids: Optional[Sequence[PointId]], filter: Any) -> None:
        raise NotImplementedError

    def scroll(
        self, offset: Optional[PointId], limit: int
    ) -> tuple[list[tuple[PointId, list, Optional[dict]]], Optional[PointId]]:
        """Up to ``limit`` points ``(id, vector, payload)`` from ``offset`` on, and the next
        offset (``None`` at the end)."""
        raise NotImplementedError

    def optimize(self) -> None:
        """Build search structures now (no-op where the engine does it in the background)."""

    def close(self) -> None:
        raise NotImplementedError
