"""Embedded backend: a Qdrant Edge shard in a local directory (no server)."""

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from quaterion_models.index.errors import missing_extra

try:
    import qdrant_edge as edge
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise missing_extra("The embedded index (Qdrant Edge)", "qdrant-edge-py") from err

from quaterion_models.index.backend import Backend, Hit, PointId, QueryOptions
from quaterion_models.index.backend import filter_items, normalise_id, vectors_in_order
from quaterion_models.index.errors import IndexConfigError, IndexLockedError, IndexNotFoundError
from quaterion_models.index.heap import release_free_heap
from quaterion_models.index.lock import DirectoryLock
from quaterion_models.index.metadata import (
    METADATA_FILE,
    HnswParams,
    QDRANT_DISTANCES,
    IndexInfo,
    read_metadata,
    write_metadata,
)

#: Sub-directory of the index directory holding the Edge shard.
SHARD_DIR = "shard"
#: File of the index directory whose lock marks an open handle (kept when the index is
#: dropped: a lock file deleted while another process waits on it would lock nothing).
LOCK_FILE = "index.lock"


class EmbeddedBackend(Backend):
    """Index directory ``path`` = ``index.json`` (the binding) + ``shard/`` (Qdrant Edge).

    The directory allows one open handle: a second open, in this or another process,
    raises :class:`IndexLockedError` (an ``index.lock`` file holds the lock, since an Edge
    shard without a write-ahead log takes none itself). Every upsert goes through the
    shard's write-ahead log and is flushed before it returns.

    Args:
        path: the index directory.
        search_threads: threads of the shard's search pool (default: one per CPU); e.g. 1 to
            compare against a single-threaded brute force like for like.
        low_memory: for a large index rebuilt from data you keep (e.g. an evaluation): the
            shard is created without a write-ahead log (each upsert is still flushed before
            it returns, but a process killed during a flush may leave a shard that must be
            rebuilt), and its vectors and graph are memory-mapped cold (read from disk on
            demand instead of loaded whole). Opening an existing shard keeps its log setting.
    """

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        search_threads: Optional[int] = None,
        low_memory: bool = False,
    ):
        if not isinstance(low_memory, bool):
            raise TypeError(f"low_memory must be a bool, got {low_memory!r}")
        self.low_memory = low_memory
        if search_threads is not None and (
            isinstance(search_threads, bool) or not isinstance(search_threads, int)
        ):
            raise TypeError(f"search_threads must be an int or None, got {search_threads!r}")
        if search_threads is not None and search_threads < 1:
            raise ValueError(f"search_threads must be >= 1, got {search_threads}")
        self.search_threads = search_threads
        self.path = Path(path)
        self.location = f"embedded index {self.path}"
        self.shard: Optional[edge.EdgeShard] = None
        self.info: Optional[IndexInfo] = None
        self.lock = DirectoryLock(self.path / LOCK_FILE)

    @property
    def shard_path(self) -> Path:
        return self.path / SHARD_DIR

    def load_info(self) -> Optional[IndexInfo]:
        if self.path.exists() and not self.path.is_dir():
            raise IndexNotFoundError(f"{self.path} is a file, not an index directory")
        if not (self.path / METADATA_FILE).is_file():
            if self.shard_path.exists():
                raise IndexNotFoundError(
                    f"{self.path} holds a shard but no {METADATA_FILE}: it was not created by "
                    "SimilarityIndex; pass recreate=True to replace it"
                )
            return None
        self._lock()
        info = read_metadata(self.path)
        if self.shard_path.is_dir():  # also a shard whose creation was cut short
            try:
                self.shard = self._call(
                    edge.EdgeShard.load, str(self.shard_path), self._config(info)
                )
            except Exception as err:
                if "ncompatible config" not in str(err):
                    raise
                raise IndexConfigError(
                    f"{self.location}: its shard does not match {METADATA_FILE} (distance "
                    f"{info.distance!r}, size {info.dim}): {str(err).split(': ')[-1]}. The "
                    f"{METADATA_FILE} was edited or comes from another index: restore it, or "
                    "pass recreate=True to index again"
                ) from err
        else:  # a crash between writing the metadata and creating the shard
            config = self._config(info, creating=True)
            self.shard = self._call(edge.EdgeShard.create, str(self.shard_path), config)
        self.info = info
        return info

    def create(self, info: IndexInfo) -> None:
        # through a symlink to a directory not made yet, too
        Path(os.path.realpath(self.path)).mkdir(parents=True, exist_ok=True)
        self._lock()
        if (self.path / METADATA_FILE).exists() or self.shard_path.exists():
            raise IndexConfigError(
                f"{self.location} was created meanwhile by another handle (in this or another "
                "process) after this one found it missing: open it again"
            )
        write_metadata(self.path, info)
        config = self._config(info, creating=True)
        self.shard = self._call(edge.EdgeShard.create, str(self.shard_path), config)
        self.info = info

    def drop(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise IndexNotFoundError(f"{self.path} is a file, not an index directory")
        if self.path.is_dir():
            self._lock()  # first, so that an index open elsewhere is never deleted
        if self.shard is None and self.shard_path.exists():
            try:  # a handle of a version without the lock file holds the shard's own lock
                self._call(edge.EdgeShard.load, str(self.shard_path)).close()
            except IndexLockedError:
                self.lock.release()
                raise
            except Exception:  # a damaged shard: nobody can have it open
                pass
        if self.shard is not None:
            shard, self.shard = self.shard, None
            shard.close()
        if self.shard_path.exists():
            shutil.rmtree(self.shard_path)
        metadata = self.path / METADATA_FILE
        if metadata.exists():
            metadata.unlink()

    def _config(self, info: IndexInfo, creating: bool = False) -> "edge.EdgeConfig":
        return _config(info, self.search_threads, self.low_memory, creating)

    def _locked_error(self) -> IndexLockedError:
        return IndexLockedError(
            f"{self.location} is already open (an embedded index allows one open "
            "handle, in this or another process): close the other SimilarityIndex "
            "first, or serve the index from a Qdrant server for concurrent access"
        )

    def _lock(self) -> None:
        """Take the directory's lock (kept until :meth:`close`)."""
        if not self.lock.acquire():
            raise self._locked_error()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Exception as err:
            if "WouldBlock" in str(err):  # the write-ahead log's lock
                raise self._locked_error() from err
            raise

    def upsert(
        self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[Optional[dict]]
    ) -> None:
        points = [
            edge.Point(point_id, vector, payload)
            for point_id, vector, payload in zip(ids, vectors.tolist(), payloads)
        ]
        self.shard.update(edge.UpdateOperation.upsert_points(points))
        self.shard.flush()

    def query(self, vectors: np.ndarray, options: QueryOptions) -> list[list[Hit]]:
        params = edge.SearchParams(hnsw_ef=options.hnsw_ef, exact=options.exact)
        native = _filter(options.filter)
        limit, with_payload = options.limit, options.with_payload
        requests = [
            edge.QueryRequest(
                limit=limit,
                query=edge.Query.Nearest(vector),
                filter=native,
                params=params,
                with_payload=with_payload,
            )
            for vector in vectors.tolist()
        ]
        results = self.shard.query_batch(edge.QueryBatchRequest(requests))
        return [
            [
                Hit(
                    normalise_id(p.id),
                    float(p.score),
                    (p.payload or None) if with_payload else None,
                )
                for p in r
            ]
            for r in results
        ]

    def count(self, filter: Any) -> int:
        return self.shard.count(edge.CountRequest(exact=True, filter=_filter(filter)))

    def delete(self, ids: Optional[Sequence[PointId]], filter: Any) -> None:
        if ids is not None:
            self.shard.update(edge.UpdateOperation.delete_points(list(ids)))
        if filter is not None:
            self.shard.update(edge.UpdateOperation.delete_points_by_filter(_filter(filter)))
        self.shard.flush()

    def scroll(self, offset: Optional[PointId], limit: int):
        request = edge.ScrollRequest(
            offset=offset, limit=limit, with_payload=True, with_vector=True
        )
        records, next_offset = self.shard.scroll(request)
        points = [(normalise_id(r.id), r.vector, r.payload or None) for r in records]
        return points, None if next_offset is None else normalise_id(next_offset)

    def vectors(self, ids: Sequence[PointId]) -> list[Optional[list[float]]]:
        records = self.shard.retrieve(list(ids), with_payload=False, with_vector=True)
        return vectors_in_order(ids, records)

    def optimize(self) -> None:
        """Build the graph, opening the shard afresh before and after the build.

        Qdrant Edge keeps every page its writes touched mapped, and keeps a replaced segment
        mapped until the shard closes: at 1M vectors of dimension 32 that is 256 MB before
        the build and 512 MB after it (vectors and payload pages, each file mapped twice).
        Closing and loading the shard again releases them; the build then reads the
        segment once. Each time, the C heap's free memory (the closed handle's, the graph
        build's) goes back to the system. The directory's lock is held throughout, so no other
        handle can open the index in between.
        """
        self._reopen()
        self.shard.optimize()
        self._reopen()

    def _reopen(self) -> None:
        shard, self.shard = self.shard, None
        shard.close()
        release_free_heap()
        self.shard = self._call(edge.EdgeShard.load, str(self.shard_path), self._config(self.info))

    def close(self) -> None:
        if self.shard is not None:
            shard, self.shard = self.shard, None
            shard.close()
        self.lock.release()


#: An Edge shard indexes only when ``optimize`` runs; 1 KB makes it build the graph of any
#: segment (0 would mean "never"). Also given when a shard is loaded, so shards created with
#: Qdrant's 20 MB default build their graph too.
_INDEXING_THRESHOLD_KB = 1


def _config(
    info: IndexInfo,
    search_threads: Optional[int] = None,
    low_memory: bool = False,
    creating: bool = False,
) -> "edge.EdgeConfig":
    """The shard's config; ``low_memory``: cold-mapped vectors and graph, and (only when
    ``creating``: the log is fixed at creation) no write-ahead log."""
    distance = getattr(edge.Distance, QDRANT_DISTANCES[info.distance])
    hnsw = info.hnsw or HnswParams()
    memory = {"memory": edge.Memory.Cold} if low_memory else {}
    return edge.EdgeConfig(
        vectors=edge.EdgeVectorParams(size=info.dim, distance=distance, **memory),
        hnsw_config=edge.HnswIndexConfig(
            m=hnsw.m,
            ef_construct=hnsw.ef_construct,
            full_scan_threshold=hnsw.full_scan_threshold,
            **memory,
        ),
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=_INDEXING_THRESHOLD_KB),
        max_search_threads=search_threads,
        wal_enabled=False if low_memory and creating else None,
    )


def _filter(filter: Any) -> Optional["edge.Filter"]:
    """``None``, a native ``qdrant_edge.Filter`` or ``{key: value | [values]}``."""
    if filter is None or isinstance(filter, edge.Filter):
        return filter
    conditions = [
        edge.FieldCondition(key, match=edge.MatchAny(value) if is_any else edge.MatchValue(value))
        for key, is_any, value in filter_items(filter, "qdrant_edge.Filter")
    ]
    return edge.Filter(must=conditions)
