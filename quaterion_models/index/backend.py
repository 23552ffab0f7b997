"""What both backends implement, and the search hit they return."""

from abc import ABC, abstractmethod
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


def vectors_in_order(ids: Sequence[PointId], records: Sequence[Any]) -> list[Optional[list]]:
    """The ``vector`` of the record (anything with ``id`` and ``vector``) of each of ``ids``,
    in that order; ``None`` where no record came back."""
    by_id = {normalise_id(record.id): record.vector for record in records}
    return [by_id.get(normalise_id(point_id)) for point_id in ids]


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
            kinds = {_kind(v) for v in values}
            if not values or not (kinds <= {str} or kinds <= {int}):
                raise TypeError(
                    f"filter[{key!r}]: a list filter needs a non-empty list of all str or all int "
                    f"values (not bool), got {value!r}; combine other matches in a native "
                    "Qdrant Filter"
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


def _kind(value: Any) -> type:
    """``str``, ``int`` or ``bool`` for those (and their subclasses), else the type."""
    for kind in (bool, str, int):
        if isinstance(value, kind):
            return kind
    return type(value)


class Backend(ABC):
    """Storage behind a :class:`~quaterion_models.index.SimilarityIndex`.

    The embedded and server backends implement it; subclass it to keep an index anywhere
    else and pass an instance as ``SimilarityIndex(model, backend=...)``. ``location``
    names it in messages. ``load_info`` returns ``None`` when nothing is stored there yet;
    ``create`` makes an empty index recording ``info`` (its ``hnsw`` field holds the graph
    parameters); ``drop`` removes it. Every call gets checked input: ids are valid and
    distinct, vectors are finite float32 ``(n, dim)``, payloads are JSON objects or ``None``.
    """

    location: str

    @abstractmethod
    def load_info(self) -> Optional[IndexInfo]:
        """The stored binding, or ``None`` when nothing is stored at this location yet."""

    @abstractmethod
    def create(self, info: IndexInfo) -> None:
        """Create an empty index recording ``info``."""

    @abstractmethod
    def drop(self) -> None:
        """Remove the index and everything in it."""

    @abstractmethod
    def upsert(
        self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[Optional[dict]]
    ) -> None:
        """Write one batch and return only once it is durable."""

    @abstractmethod
    def query(self, vectors: np.ndarray, options: QueryOptions) -> list[list[Hit]]:
        """``options.limit`` nearest points of each query vector, closest first."""

    @abstractmethod
    def count(self, filter: Any) -> int:
        """Number of points (matching ``filter`` if not ``None``)."""

    @abstractmethod
    def delete(self, ids: Optional[Sequence[PointId]], filter: Any) -> None:
        """Delete the points with ``ids`` and those matching ``filter`` (either may be None)."""

    @abstractmethod
    def scroll(
        self, offset: Optional[PointId], limit: int
    ) -> tuple[list[tuple[PointId, list, Optional[dict]]], Optional[PointId]]:
        """Up to ``limit`` points ``(id, vector, payload)`` from ``offset`` on, and the next
        offset (``None`` at the end)."""

    def vectors(self, ids: Sequence[PointId]) -> list[Optional[list[float]]]:
        """The stored vector of each of ``ids``, in that order (``None`` for an id not stored).

        The default reads one :meth:`scroll` page of one point from each id; backends
        override it with a batched read."""
        found: list[Optional[list[float]]] = []
        for point_id in ids:
            points, _ = self.scroll(point_id, 1)
            found.append(points[0][1] if points and points[0][0] == point_id else None)
        return found

    def optimize(self) -> None:
        """Build search structures now, whatever the number of points (default: nothing
        to build)."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the storage (idempotent)."""
