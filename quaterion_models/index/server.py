"""Server backend: a collection on a Qdrant server or cluster, through qdrant-client."""

import functools
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from typing import Any, Optional

import numpy as np

from quaterion_models.index.errors import missing_extra

try:
    from qdrant_client import QdrantClient, models
    from qdrant_client.http.exceptions import ResponseHandlingException
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise missing_extra("The server index", "qdrant-client") from err

from quaterion_models.index.backend import Backend, Hit, PointId, QueryOptions
from quaterion_models.index.backend import filter_items, normalise_id, vectors_in_order
from quaterion_models.index.errors import IndexConfigError, ServerUnreachableError
from quaterion_models.index.metadata import QDRANT_DISTANCES, HnswParams, IndexInfo

_DISTANCES = {
    "Cosine": models.Distance.COSINE,
    "Dot": models.Distance.DOT,
    "Euclid": models.Distance.EUCLID,
    "Manhattan": models.Distance.MANHATTAN,
}


def _is_local_mode(client: Any) -> bool:
    """Whether ``client`` runs Qdrant in this process (``path=...`` or ``":memory:"``): its
    local mode keeps plain Python structures without locks. Unknown clients count as local."""
    options = getattr(client, "init_options", None)
    if not isinstance(options, dict):
        return True
    return options.get("path") is not None or options.get("location") == ":memory:"


def _one_at_a_time(method: Callable) -> Callable:
    """Run ``method`` under the backend's :attr:`ServerBackend.calls` guard."""

    @functools.wraps(method)
    def guarded(self: "ServerBackend", *args: Any, **kwargs: Any) -> Any:
        with self.calls:
            return method(self, *args, **kwargs)

    return guarded


class ServerBackend(Backend):
    """A collection on the server ``client`` talks to; the binding is the collection's metadata.

    A client in local mode (``QdrantClient(path=...)`` or ``":memory:"``) is not thread-safe:
    concurrent calls corrupted its collection, so this backend runs them one at a time. Calls
    to a server run concurrently.

    Args:
        client: a ``QdrantClient`` (a server URL, or local mode in tests).
        collection: collection name.
        owns_client: close ``client`` on :meth:`close`.
        address: how to name the server in messages.
        optimize_wait_s: how long :meth:`optimize` waits for the server to finish indexing
            before it raises ``TimeoutError`` (the server goes on indexing).
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        owns_client: bool,
        address: str,
        optimize_wait_s: float = 3600.0,
    ):
        self.client = client
        self.collection = collection
        self.owns_client = owns_client
        self.location = f"collection {collection!r} on {address}"
        self.optimize_wait_s = optimize_wait_s
        #: serialises the calls to a local-mode client (a no-op guard for a server)
        self.calls: AbstractContextManager = (
            threading.RLock() if _is_local_mode(client) else nullcontext()
        )

    def _unreachable(self, err: Exception) -> ServerUnreachableError:
        return ServerUnreachableError(
            f"Qdrant at {self.location} did not answer ({type(err).__name__}: {err}); check the "
            "URL and that the server runs, or use the embedded index (pass path=...)"
        )

    @_one_at_a_time
    def load_info(self) -> Optional[IndexInfo]:
        try:
            if not self.client.collection_exists(self.collection):
                return None
            config = self.client.get_collection(self.collection).config
        except (ResponseHandlingException, OSError) as err:
            raise self._unreachable(err) from err
        try:
            info = IndexInfo.from_dict(config.metadata or {}, self.location)
        except ValueError as err:
            raise IndexConfigError(
                f"{err}: the collection exists but was not created by SimilarityIndex; pass "
                "another collection name or recreate=True"
            ) from None
        params = config.params.vectors
        if isinstance(params, models.VectorParams):
            stored = (params.size, params.distance)
            expected = (info.dim, _DISTANCES[QDRANT_DISTANCES[info.distance]])
            if stored != expected:
                raise IndexConfigError(
                    f"{self.location} stores vectors of size {params.size} with "
                    f"{params.distance}, but its metadata says {info.dim} / {info.distance}: "
                    "the collection was changed outside quaterion; pass recreate=True"
                )
        return info

    @_one_at_a_time
    def create(self, info: IndexInfo) -> None:
        try:
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(
                    size=info.dim, distance=_DISTANCES[QDRANT_DISTANCES[info.distance]]
                ),
                hnsw_config=models.HnswConfigDiff(**asdict(info.hnsw or HnswParams())),
                metadata=info.to_dict(),
            )
        except (ResponseHandlingException, OSError) as err:
            raise self._unreachable(err) from err

    @_one_at_a_time
    def drop(self) -> None:
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)

    @_one_at_a_time
    def upsert(
        self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[Optional[dict]]
    ) -> None:
        points = [
            models.PointStruct(id=point_id, vector=vector, payload=payload)
            for point_id, vector, payload in zip(ids, vectors.tolist(), payloads)
        ]
        self.client.upsert(self.collection, points=points, wait=True)

    @_one_at_a_time
    def query(self, vectors: np.ndarray, options: QueryOptions) -> list[list[Hit]]:
        exact, hnsw_ef = options.exact, options.hnsw_ef
        params = models.SearchParams(exact=exact, hnsw_ef=hnsw_ef) if exact or hnsw_ef else None
        native = _filter(options.filter)
        limit, with_payload = options.limit, options.with_payload
        requests = [
            models.QueryRequest(
                query=vector, limit=limit, filter=native, params=params, with_payload=with_payload
            )
            for vector in vectors.tolist()
        ]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [
            [
                Hit(
                    normalise_id(p.id),
                    float(p.score),
                    (p.payload or None) if with_payload else None,
                )
                for p in response.points
            ]
            for response in responses
        ]

    @_one_at_a_time
    def count(self, filter: Any) -> int:
        return self.client.count(self.collection, count_filter=_filter(filter), exact=True).count

    @_one_at_a_time
    def delete(self, ids: Optional[Sequence[PointId]], filter: Any) -> None:
        if ids is not None:
            selector = models.PointIdsList(points=list(ids))
            self.client.delete(self.collection, points_selector=selector, wait=True)
        if filter is not None:
            selector = models.FilterSelector(filter=_filter(filter))
            self.client.delete(self.collection, points_selector=selector, wait=True)

    @_one_at_a_time
    def scroll(self, offset: Optional[PointId], limit: int):
        records, next_offset = self.client.scroll(
            self.collection, offset=offset, limit=limit, with_payload=True, with_vectors=True
        )
        points = [(normalise_id(r.id), r.vector, r.payload or None) for r in records]
        return points, None if next_offset is None else normalise_id(next_offset)

    @_one_at_a_time
    def vectors(self, ids: Sequence[PointId]) -> list[Optional[list[float]]]:
        records = self.client.retrieve(
            self.collection, ids=list(ids), with_payload=False, with_vectors=True
        )
        return vectors_in_order(ids, records)

    @_one_at_a_time
    def optimize(self) -> None:
        """Lower the collection's indexing threshold to 1 KB (Qdrant indexes only segments
        above it, 20 MB by default) and wait until the server reports the collection green,
        at most ``optimize_wait_s`` seconds."""
        optimizers = models.OptimizersConfigDiff(indexing_threshold=1)
        self.client.update_collection(self.collection, optimizers_config=optimizers)
        deadline = time.monotonic() + self.optimize_wait_s
        while True:
            info = self.client.get_collection(self.collection)
            if info.status == models.CollectionStatus.GREEN:
                return
            if info.status == models.CollectionStatus.RED:
                raise RuntimeError(
                    f"Qdrant reports {self.location} failed to optimize: {info.optimizer_status}"
                )
            if info.status == models.CollectionStatus.GREY:  # optimizations wait for a trigger
                self.client.update_collection(self.collection, optimizers_config=optimizers)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Qdrant still indexes {self.location} after {self.optimize_wait_s:g} s "
                    f"(status {info.status}); it goes on indexing, and searches answer "
                    "meanwhile. Call optimize() again to wait longer, or raise the backend's "
                    "optimize_wait_s"
                )
            time.sleep(0.2)

    @_one_at_a_time
    def close(self) -> None:
        if self.owns_client:
            self.client.close()


def connect(url: str, api_key: Optional[str], timeout: float) -> QdrantClient:
    """A client for ``url``; nothing is sent until the first request.

    Raises:
        TypeError / ValueError: ``url`` is not a string, or not a URL the client can parse.
    """
    example = "e.g. url='http://localhost:6333'"
    if not isinstance(url, str):
        raise TypeError(f"url must be a Qdrant server URL (str), {example}; got {url!r}")
    try:
        return QdrantClient(url=url, api_key=api_key, timeout=max(1, int(round(timeout))))
    except ValueError as err:  # urllib3's LocationParseError is a ValueError
        raise ValueError(
            f"url {url!r} is not a Qdrant server URL ({err}); pass one, {example}"
        ) from err


def _filter(filter: Any) -> Optional["models.Filter"]:
    """``None``, a native ``qdrant_client.models.Filter`` or ``{key: value | [values]}``."""
    if filter is None or isinstance(filter, models.Filter):
        return filter
    conditions = [
        models.FieldCondition(
            key=key,
            match=models.MatchAny(any=value) if is_any else models.MatchValue(value=value),
        )
        for key, is_any, value in filter_items(filter, "qdrant_client Filter")
    ]
    return models.Filter(must=conditions)
