"""``SimilarityIndex``: a Qdrant collection bound to the servable that fills and queries it."""

import json
import numbers
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Optional, Union

import numpy as np
from tqdm.auto import tqdm

from quaterion_models.index.backend import Backend, Hit, PointId, QueryOptions
from quaterion_models.index.errors import IndexConfigError, IndexNotFoundError, ModelMismatchError
from quaterion_models.index.fingerprint import (
    Servable,
    describe,
    is_exported,
    output_size,
    servable_fingerprint,
)
from quaterion_models.index.metadata import HnswParams, IndexInfo, check_distance
from quaterion_models.index.rows import check_finite, check_ids, check_payloads, check_point_ids

_MODES = ("open_or_create", "open", "create")

#: Backends bound to an open SimilarityIndex: a second index on one of them would close the
#: first one's storage when it fails, or share its handle.
_BOUND: "weakref.WeakSet[Backend]" = weakref.WeakSet()


class SimilarityIndex:
    """Vectors of a servable in Qdrant: embedded (a local directory) or on a server.

    The index records the servable's fingerprint, its distance and vector size when it
    is created, and refuses a different model later (:class:`ModelMismatchError`) unless
    ``recreate=True`` drops the stored points and binds the index to the new model.

    Args:
        model: the servable (a ``SimilarityModel`` or the directory it was saved to). A
            ``TrainableModel`` also works: its ``.model`` is used and, unless ``distance``
            is given, its loss's ``distance_metric_name``.
        path: directory of an embedded (Qdrant Edge) index.
        url: address of a Qdrant server, e.g. ``"http://localhost:6333"`` (instead of path).
        api_key: API key of the server.
        client: a ready ``qdrant_client.QdrantClient`` (instead of ``url``), e.g. local mode.
        backend: any :class:`~quaterion_models.index.Backend` (instead of ``path``, ``url``
            or ``client``, which are shortcuts building the embedded or server backend).
        collection: collection name on the server.
        distance: the distance the model was trained with (``"cosine"``, ``"dot_product"``,
            ``"euclidean"``, ``"manhattan"``). Needed to create an index from a plain
            servable; when opening, it must match the recorded one.
        mode: ``"open_or_create"``, ``"open"`` (missing index is an error) or ``"create"``
            (an existing index is an error unless ``recreate``).
        recreate: drop whatever is stored and start an empty index for ``model``.
        batch_size: objects encoded and upserted per batch by :meth:`add`.
        show_progress: show a progress bar while adding.
        timeout: seconds to wait for a server.
        m: HNSW edges per node, set when the index is created (default 16).
        ef_construct: HNSW build beam width, set when the index is created (default 100).
        full_scan_threshold: KB of vectors under which a segment is searched exhaustively
            even with a graph (default 10000, Qdrant's); see :class:`HnswParams`. Opening an
            index with HNSW parameters it was not created with raises
            :class:`IndexConfigError`.

    Attributes:
        closed: whether :meth:`close` was called (every later call raises ``RuntimeError``).

    Example::

        with SimilarityIndex(model, path="cars-index", distance="cosine") as index:
            index.add(images, payloads=[{"label": y} for y in labels])
            hits = index.search([query_image], limit=5)[0]
    """

    def __init__(
        self,
        model: Any,
        path: Union[str, "os.PathLike[str]", None] = None,
        *,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        client: Any = None,
        backend: Optional[Backend] = None,
        collection: str = "quaterion",
        distance: Optional[str] = None,
        mode: str = "open_or_create",
        recreate: bool = False,
        batch_size: int = 64,
        show_progress: bool = True,
        timeout: float = 5.0,
        m: Optional[int] = None,
        ef_construct: Optional[int] = None,
        full_scan_threshold: Optional[int] = None,
    ):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if mode == "open" and recreate:
            raise ValueError(
                "mode='open' with recreate=True would drop the index and then find none: use "
                "SimilarityIndex.create(..., recreate=True) (or mode='open_or_create') to "
                "replace it"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model, trained_distance = _resolve_model(model)
        distance = check_distance(distance) if distance is not None else trained_distance
        self.batch_size = batch_size
        self.show_progress = show_progress
        hnsw = {"m": m, "ef_construct": ef_construct, "full_scan_threshold": full_scan_threshold}
        hnsw = {name: value for name, value in hnsw.items() if value is not None}
        HnswParams(**hnsw)  # checks the values before anything is opened
        if _is_bound(backend):
            raise ValueError(
                f"this backend ({backend.location}) is already bound to an open "
                "SimilarityIndex: close that index first, or use that index"
            )
        self.backend = _backend(path, url, api_key, client, backend, collection, timeout)
        self.closed = False
        try:
            self.info = self._bind(distance, mode, recreate, hnsw)
        except BaseException:
            self.backend.close()
            raise
        try:
            _BOUND.add(self.backend)
        except TypeError:  # a backend class that cannot be hashed or weakly referenced
            pass

    @classmethod
    def open(cls, model: Any, path: Any = None, **kwargs: Any) -> "SimilarityIndex":
        """Open an existing index; :class:`IndexNotFoundError` if there is none."""
        return cls(model, path, mode="open", **kwargs)

    @classmethod
    def create(cls, model: Any, path: Any = None, **kwargs: Any) -> "SimilarityIndex":
        """Create a new index; an error if one exists (unless ``recreate=True``)."""
        return cls(model, path, mode="create", **kwargs)

    def _bind(
        self, distance: Optional[str], mode: str, recreate: bool, hnsw: dict[str, int]
    ) -> IndexInfo:
        fingerprint = servable_fingerprint(self.model)
        dim = output_size(self.model)
        try:
            stored = self.backend.load_info()
        except (IndexNotFoundError, ValueError) as damaged:  # recreate replaces it
            if not recreate:
                raise
            if distance is None:  # checked before anything is dropped
                raise ValueError(
                    f"{damaged}. Replacing it needs the distance the model was trained with "
                    "(its record cannot be read): pass distance=... with recreate=True"
                ) from damaged
            stored = None
            self.backend.drop()
        if stored is not None and recreate:
            distance = distance or stored.distance
            self.backend.drop()
            stored = None
        if stored is None:
            if mode == "open":
                raise IndexNotFoundError(
                    f"no index at {self.backend.location}: create it first "
                    "(SimilarityIndex.create or mode='open_or_create')"
                )
            if distance is None:
                raise ValueError(
                    "creating an index needs the distance the model was trained with: pass "
                    "distance='cosine' (or 'dot_product', 'euclidean', 'manhattan'), e.g. "
                    "distance=trainable_model.loss.distance_metric_name"
                )
            info = IndexInfo(fingerprint, describe(self.model), distance, dim, HnswParams(**hnsw))
            self.backend.create(info)
            return info
        if mode == "create":
            raise IndexConfigError(
                f"{self.backend.location} already exists: open it (mode='open_or_create') or "
                "pass recreate=True to replace it"
            )
        if stored.dim != dim:
            raise IndexConfigError(
                f"{self.backend.location} holds vectors of size {stored.dim} but the model "
                f"outputs {dim}: open it with the model that built it, or recreate=True"
            )
        if distance is not None and distance != stored.distance:
            raise IndexConfigError(
                f"{self.backend.location} was created with distance {stored.distance!r}, not "
                f"{distance!r}: pass distance={stored.distance!r} (or omit it), or "
                "recreate=True to index again with the new distance"
            )
        recorded = asdict(stored.hnsw) if stored.hnsw is not None else {}
        differing = {name: v for name, v in hnsw.items() if recorded.get(name) != v}
        if differing:
            raise IndexConfigError(
                f"{self.backend.location} was created with HNSW parameters "
                f"{recorded or 'not recorded (Qdrant defaults)'}, not {differing}: they are "
                "fixed at creation; omit them to open it, or pass recreate=True to rebuild"
            )
        if stored.fingerprint != fingerprint:
            raise ModelMismatchError(
                f"{self.backend.location} was built by model {stored.fingerprint} "
                f"({stored.model}), but it is opened with model {fingerprint} "
                f"({describe(self.model)}). Vectors of two models are not comparable: open it "
                "with the original servable, or pass recreate=True to re-index with this one"
            )
        return stored

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        objects: Sequence[Any],
        payloads: Optional[Sequence[Optional[dict]]] = None,
        ids: Optional[Sequence[PointId]] = None,
    ) -> list[PointId]:
        """Encode ``objects`` with the model and upsert them; returns their ids.

        The whole call is checked before the first point is written: ids distinct and
        valid, payloads JSON, and every vector the model produced finite (so the call
        encodes all its objects first; split a huge collection into several calls). Then
        the points are written in batches, each durable once written: if the process dies
        while writing, the batches written before stay in the index. Default ids are random
        UUID strings; ids that already exist in the index are overwritten. ``objects`` is a
        list (or other iterable) of objects: a lone string or dict is refused with
        ``TypeError`` rather than split into characters or keys.
        """
        self._check_open()
        objects = _object_list(objects, "add")
        payloads, ids = check_payloads(payloads, len(objects)), check_ids(ids, len(objects))
        parts = []
        bar = tqdm(total=len(objects), desc="Encoding", disable=not self.show_progress)
        with bar:
            for start in range(0, len(objects), self.batch_size):
                batch = objects[start : start + self.batch_size]
                parts.append(_as_float32(self.model.encode(batch, batch_size=self.batch_size)))
                bar.update(len(batch))
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.info.dim), np.float32)
        check_finite(vectors, "the model's vectors")
        self._write(ids, vectors, payloads, self.batch_size)
        return ids

    def add_vectors(
        self,
        vectors: Any,
        payloads: Optional[Sequence[Optional[dict]]] = None,
        ids: Optional[Sequence[PointId]] = None,
        *,
        batch_size: Optional[int] = None,
    ) -> list[PointId]:
        """Upsert vectors the bound model already produced (``(N, dim)``); returns their ids.

        Checked like :meth:`add` before anything is written. ``batch_size`` points are
        written per durable batch (default: the index's ``batch_size``).
        """
        self._check_open()
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        vectors = self._check_vectors(vectors)
        payloads, ids = check_payloads(payloads, len(vectors)), check_ids(ids, len(vectors))
        self._write(ids, vectors, payloads, batch_size or self.batch_size)
        return ids

    def _write(self, ids: list, vectors: np.ndarray, payloads: list, step: int) -> None:
        bar = tqdm(total=len(vectors), desc="Indexing", disable=not self.show_progress)
        with bar:
            for start in range(0, len(vectors), step):
                stop = start + step
                self.backend.upsert(ids[start:stop], vectors[start:stop], payloads[start:stop])
                bar.update(min(stop, len(vectors)) - start)

    def delete(self, ids: Optional[Sequence[PointId]] = None, filter: Optional[Any] = None) -> None:
        """Delete points by id and/or every point matching ``filter`` (``ids=[]`` deletes
        nothing; ids not stored are ignored)."""
        self._check_open()
        if ids is None and filter is None:
            raise ValueError("delete needs ids=[...] or filter={...}; nothing was deleted")
        ids = check_point_ids(ids) if ids is not None else None
        if ids or filter is not None:  # ids=[] deletes nothing
            self.backend.delete(ids or None, filter)

    def optimize(self) -> None:
        """Build the HNSW graph now, whatever the number of points, and return once it is
        built (Qdrant indexes only segments above its indexing threshold by itself)."""
        self._check_open()
        self.backend.optimize()

    def copy_to(self, target: "SimilarityIndex", batch_size: int = 1024) -> int:
        """Copy every point (id, vector, payload) into ``target``, e.g. an embedded index to
        a server, without encoding again; returns the number copied.

        ``target`` must be bound to the same servable and distance.
        """
        self._check_open()
        target._check_open()
        if (target.info.fingerprint, target.info.distance) != (
            self.info.fingerprint,
            self.distance,
        ):
            raise ModelMismatchError(
                f"cannot copy {self.backend.location} (model {self.info.fingerprint}, "
                f"{self.distance}) into {target.backend.location} (model "
                f"{target.info.fingerprint}, {target.distance}): bind both to the same servable "
                "and distance, or re-index with add()"
            )
        copied, offset = 0, None
        bar = tqdm(total=self.count(), desc="Copying", disable=not self.show_progress)
        with bar:
            while True:
                points, offset = self.backend.scroll(offset, batch_size)
                if points:
                    ids, vectors, payloads = zip(*points)
                    target.backend.upsert(list(ids), _as_float32(vectors), list(payloads))
                    copied += len(points)
                    bar.update(len(points))
                if offset is None:
                    return copied

    # -- reading -------------------------------------------------------------------------

    def search(
        self,
        objects: Optional[Sequence[Any]] = None,
        limit: int = 10,
        filter: Optional[Any] = None,
        *,
        vectors: Any = None,
        exact: bool = False,
        hnsw_ef: Optional[int] = None,
        with_payload: bool = True,
    ) -> list[list[Hit]]:
        """Nearest points for each query, closest first.

        Args:
            objects: a list (or other iterable) of raw queries, encoded with the bound
                model; a lone string or dict is refused (``TypeError``), not split.
            limit: hits per query.
            filter: ``{field: value}`` (equal) or ``{field: [values]}`` (any of), all
                fields must match; or a native Qdrant filter of the backend. A field is a
                Qdrant key path: ``"a.b"`` reads ``{"a": {"b": ...}}``, so a payload key
                that itself contains ``.`` or ``[`` cannot be filtered on (store it nested).
            vectors: ``(n, dim)`` query vectors instead of ``objects``.
            exact: brute-force search instead of HNSW.
            hnsw_ef: HNSW beam width (higher: better recall, slower).
            with_payload: return payloads (``None`` otherwise).

        Returns:
            one list of :class:`Hit` per query.
        """
        self._check_open()
        if (objects is None) == (vectors is None):
            raise ValueError("search needs exactly one of objects=[...] or vectors=array")
        if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        limit = int(limit)
        if hnsw_ef is not None and (
            isinstance(hnsw_ef, bool) or not isinstance(hnsw_ef, int) or hnsw_ef < 1
        ):
            raise ValueError(f"hnsw_ef must be a positive int or None, got {hnsw_ef!r}")
        if objects is not None:
            objects = _object_list(objects, "search")
            vectors = self.model.encode(objects, batch_size=self.batch_size) if objects else []
        vectors = self._check_vectors(vectors, "nothing was searched")
        options = QueryOptions(limit, filter, exact, hnsw_ef, with_payload)
        results: list[list[Hit]] = []
        for start in range(0, len(vectors), self.batch_size):
            results.extend(self.backend.query(vectors[start : start + self.batch_size], options))
        return results

    def vectors(self, ids: Sequence[PointId]) -> np.ndarray:
        """The stored vectors of the points ``ids``: float32 ``(len(ids), dim)``, in order.

        Vectors come back as Qdrant stores them: for the cosine distance, scaled to unit
        length. ``TypeError`` for an id that is not an int or a str; ``ValueError`` naming the
        first id the index does not hold.
        """
        self._check_open()
        ids = check_point_ids(ids)
        rows: list = []
        for start in range(0, len(ids), self.batch_size):
            rows.extend(self.backend.vectors(ids[start : start + self.batch_size]))
        missing = [point_id for point_id, row in zip(ids, rows) if row is None]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(ids)} ids are not in {self.backend.location} (first: "
                f"{missing[0]!r}); nothing is stored under them"
            )
        return _as_float32(rows).reshape(len(ids), self.info.dim)

    def count(self, filter: Optional[Any] = None) -> int:
        """Number of stored points (matching ``filter`` if given)."""
        self._check_open()
        return self.backend.count(filter)

    def __len__(self) -> int:
        return self.count()

    @property
    def distance(self) -> str:
        """The quaterion distance name recorded at creation."""
        return self.info.distance

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the index (the embedded directory's lock, the server connection)."""
        self.closed = True
        _BOUND.discard(self.backend)
        self.backend.close()

    def __enter__(self) -> "SimilarityIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(
                f"this SimilarityIndex ({self.backend.location}) is closed: open the index "
                "again (SimilarityIndex(...) or SimilarityIndex.open(...))"
            )

    def _check_vectors(self, vectors: Any, outcome: str = "nothing was written") -> np.ndarray:
        if type(vectors).__module__.startswith("torch"):  # a torch.Tensor (torch is optional)
            vectors = vectors.detach().float().cpu().numpy()
        try:
            vectors = _as_float32(np.asarray(vectors, dtype=np.float32))
        except (ValueError, TypeError) as err:  # ragged rows, strings, objects
            raise TypeError(
                f"vectors must be a (n, {self.info.dim}) array of numbers (a numpy array, a "
                f"tensor or equal-length lists of floats), got {type(vectors).__name__} that "
                f"numpy cannot read as one: {str(err).rstrip('.')}; {outcome}"
            ) from None
        if vectors.size == 0:
            return vectors.reshape(0, self.info.dim)
        if vectors.ndim != 2 or vectors.shape[1] != self.info.dim:
            raise IndexConfigError(
                f"vectors must have shape (n, {self.info.dim}) for {self.backend.location}, got "
                f"{vectors.shape}"
            )
        check_finite(vectors, "vectors", outcome)
        return vectors


def _is_bound(backend: Any) -> bool:
    """Whether ``backend`` is bound to an open SimilarityIndex."""
    try:
        return isinstance(backend, Backend) and backend in _BOUND
    except TypeError:  # not hashable: never recorded
        return False


def _as_float32(vectors: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))


def _resolve_model(model: Any) -> tuple[Servable, Optional[str]]:
    """A servable (torch or its ONNX export), its saved directory, or a TrainableModel (its
    model and loss distance)."""
    from quaterion_models.onnx.layout import CONFIG_FILE, FORMAT

    if isinstance(model, (str, os.PathLike)):
        if _is_onnx_export(os.path.join(os.fspath(model), CONFIG_FILE), FORMAT):
            from quaterion_models.onnx.runtime import OnnxSimilarityModel

            return OnnxSimilarityModel.load(os.fspath(model)), None
        from quaterion_models.model import SimilarityModel

        return SimilarityModel.load(os.fspath(model)), None
    if is_exported(model):
        return model, None
    from quaterion_models.model import SimilarityModel

    if isinstance(model, SimilarityModel):
        return model, None
    inner = getattr(model, "model", None)
    if isinstance(inner, SimilarityModel):
        name = getattr(getattr(model, "loss", None), "distance_metric_name", None)
        return inner, check_distance(name) if name is not None else None
    raise TypeError(
        f"model must be a SimilarityModel, an OnnxSimilarityModel, a saved servable directory "
        f"or a TrainableModel, got {type(model).__name__}"
    )


def _is_onnx_export(config_path: str, expected_format: str) -> bool:
    """Whether ``config_path`` is the config of an ONNX export (not of a torch servable)."""
    try:
        with open(config_path, encoding="utf-8") as file:
            return json.load(file).get("format") == expected_format
    except (OSError, ValueError, AttributeError):
        return False


def _backend(
    path: Any,
    url: Optional[str],
    api_key: Optional[str],
    client: Any,
    backend: Optional[Backend],
    collection: str,
    timeout: float,
) -> Backend:
    """The given ``backend``, or the one its shortcut (``path``, ``url``, ``client``) builds."""
    given = {
        name: value
        for name, value in (("path", path), ("url", url), ("client", client), ("backend", backend))
        if value is not None
    }
    if len(given) != 1:
        raise ValueError(
            "pass exactly one location: path='dir' (embedded), url='http://host:6333' (server), "
            f"client=QdrantClient(...) or backend=Backend(...); got {list(given) or 'none'}"
        )
    [(name, value)] = given.items()
    if name == "backend" and not isinstance(value, Backend):
        raise TypeError(
            f"backend must be a quaterion_models.index.Backend, got {type(value).__name__}"
        )
    return value if name == "backend" else _SHORTCUTS[name](value, api_key, collection, timeout)


def _object_list(objects: Any, method: str) -> list:
    """``objects`` as a list of records; a lone string or mapping is refused, since listing
    it would make each character (or key) a record."""
    if isinstance(objects, (str, bytes, Mapping)):
        raise TypeError(
            f"{method} takes a list of objects, got one {type(objects).__name__} "
            f"({objects!r:.40}), whose items would each become an object; pass "
            f"[obj] for one object"
        )
    return objects if isinstance(objects, list) else list(objects)


def _embedded(path: Any, api_key: Any, collection: str, timeout: float) -> Backend:
    from quaterion_models.index.embedded import EmbeddedBackend

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be the index directory (str or os.PathLike), got "
            f"{type(path).__name__} {path!r}; pass e.g. path='my-index'"
        )

    return EmbeddedBackend(path)


def _server_url(url: str, api_key: Optional[str], collection: str, timeout: float) -> Backend:
    from quaterion_models.index.server import ServerBackend, connect

    return ServerBackend(connect(url, api_key, timeout), collection, True, url)


def _server_client(client: Any, api_key: Any, collection: str, timeout: float) -> Backend:
    from quaterion_models.index.server import ServerBackend

    return ServerBackend(client, collection, False, "the given QdrantClient")


#: Location keyword -> the function building its backend.
_SHORTCUTS = {"path": _embedded, "url": _server_url, "client": _server_client}
