"""Cache encoder whose rows live in a memory-mapped file (``CacheType.DISK``)."""

import hashlib
import os
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from quaterion import distributed
from quaterion.train.cache._checksum import file_sha256, floating_dtype, rows_sha256
from quaterion.train.cache.cache_config import CacheType
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.in_memory_cache_encoder import InMemoryStore
from quaterion_models.encoders import Encoder

ROWS_SUFFIX = ".rows"


def map_rows(path: str, rows: int, width: int, dtype: torch.dtype) -> Tensor:
    """``(rows, width)`` tensor over the raw file ``path`` (private mapping, read lazily)."""
    expected = rows * width * torch.empty(0, dtype=dtype).element_size()
    size = os.path.getsize(path)
    if size != expected:
        raise ValueError(f"{path} holds {size} bytes, expected {expected}: truncated or corrupt")
    if rows == 0:
        return torch.empty(0, width, dtype=dtype)
    # copy-on-write mapping: pages are read from the file on access and stay file-backed
    mapped = np.memmap(path, dtype=np.uint8, mode="c", shape=(rows, expected // rows))
    return torch.from_numpy(mapped).view(dtype)


def _write(out, digest, rows: Tensor) -> None:
    """Append the raw bytes of ``rows`` to the file ``out`` and to the hash ``digest``."""
    data = rows.contiguous().reshape(-1).view(torch.uint8).numpy().data
    out.write(data)
    digest.update(data)


class DiskStore(InMemoryStore):
    """Keeps the rows in a file under ``directory``, mapped into memory, never loaded whole.

    The fill appends each batch's rows to ``<directory>/.fill/<name>/rank<r>.rows``; under
    DDP rank 0 then joins the ranks' files. :meth:`save_cache` moves the file next to the
    cache file (``<path>.rows``). Rows are served from the page cache, so a cache larger
    than RAM trains at the speed of the disk.

    Args:
        encoder: frozen encoder to wrap.
        directory: the cache's ``save_dir``.
        name: the encoder's name (names the fill files).
        dtype: dtype the rows are stored in; ``None`` keeps the encoder's.
        cache_type: the ``STORES`` name it was built for (a subclass registered under a
            name of its own records that name, so a persisted cache is read back by it).
    """

    needs_save_dir = True

    def __init__(
        self,
        encoder: Encoder,
        directory: str,
        name: str,
        dtype: Optional[torch.dtype] = None,
        cache_type: str = CacheType.DISK,
    ):
        super().__init__(encoder, CacheType.DISK, dtype, name)  # rows served from the host
        self._kind = cache_type
        self.directory = directory
        self._file = None
        self._rows_path: Optional[str] = None
        self._digest = None  # SHA-256 of the rows file's bytes, updated while writing
        self._bytes_sha256: Optional[str] = None

    @property
    def cache_type(self) -> str:
        """The ``STORES`` name it was built for (``"disk"`` unless a subclass has its own)."""
        return self._kind

    @classmethod
    def from_config(
        cls, encoder: Encoder, name: str, cache_type: str, cache_config: CacheConfig
    ) -> "DiskStore":
        """A disk store under ``cache_config.save_dir`` (required: ``needs_save_dir``)."""
        return cls(encoder, cache_config.save_dir, name, cache_config.dtype, cache_type)

    def _fill_path(self, part: str) -> str:
        return os.path.join(self.directory, ".fill", self.name, f"{part}{ROWS_SUFFIX}")

    def append_rows(self, rows: Tensor) -> None:
        """Write one fill batch's rows to this rank's fill file."""
        if self._file is None:
            self._rows_path = self._fill_path(f"rank{distributed.global_rank()}")
            os.makedirs(os.path.dirname(self._rows_path), exist_ok=True)
            self._file, self._digest = open(self._rows_path, "wb"), hashlib.sha256()
        _write(self._file, self._digest, rows)

    def finish_fill(self) -> None:
        """Close the fill file and map it."""
        dtype = self._dtype or self._out_dtype or torch.get_default_dtype()
        if self._file is None:  # nothing encoded here (an empty share of the data)
            self.append_rows(torch.empty(0, self.embedding_size, dtype=dtype))
        with self._file:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file, self._bytes_sha256 = None, self._digest.hexdigest()
        self._cache = map_rows(self._rows_path, len(self._offset_map), self.embedding_size, dtype)

    def gather_ranks(self) -> None:
        """Under DDP: rank 0 joins every rank's rows file (rank order, first key wins),
        the others wait and map the joined file.

        Every rank has closed its file when :meth:`merge_rank_keys` (a collective) returns, so
        rank 0 reads them only after that. A rank file rank 0 cannot read (another node's
        disk, a truncated file), or a joined file some rank cannot see, is the same
        ``RuntimeError`` on every rank."""
        keeps, counts = self.merge_rank_keys()
        joined = self._fill_path("all")
        dtype = self._cache.dtype
        error = None
        if distributed.global_rank() == 0:
            try:
                self._bytes_sha256 = self._join(joined, keeps, counts, dtype)
            except (OSError, ValueError) as err:
                error = (
                    f"CacheType.DISK: rank 0 cannot read the rows the other ranks wrote "
                    f"({err}). Across several nodes a disk cache needs save_dir on a filesystem "
                    "every node shares; use it, or CacheType.CPU"
                )
        else:
            self._bytes_sha256 = None  # the joined file's: computed when it is asked for
        errors = distributed.gather_objects(error)
        if errors[0] is not None:
            raise RuntimeError(errors[0])
        expected = len(self._offset_map) * self.embedding_size * self._cache.element_size()
        visible = os.path.isfile(joined) and os.path.getsize(joined) == expected
        blind = [rank for rank, ok in enumerate(distributed.gather_objects(visible)) if not ok]
        if blind:
            raise RuntimeError(
                f"CacheType.DISK: rank(s) {blind} cannot see the rows file {joined} that rank 0 "
                "wrote: across several nodes a disk cache needs save_dir on a filesystem every "
                "node shares; use it, or CacheType.CPU (each node-local save_dir then gets its "
                "own copy)"
            )
        os.remove(self._rows_path)
        self._rows_path = joined
        self._cache = map_rows(joined, len(self._offset_map), self.embedding_size, dtype)

    def _join(self, joined: str, keeps: List[List[int]], counts: List[int], dtype) -> str:
        """Write the kept rows of every rank's file to ``joined``; its bytes' SHA-256."""
        digest, width = hashlib.sha256(), self.embedding_size
        with open(joined, "wb") as out:
            for rank, keep in enumerate(keeps):
                rows = map_rows(self._fill_path(f"rank{rank}"), counts[rank], width, dtype)
                for chunk in torch.tensor(keep, dtype=torch.long).split(65536):
                    _write(out, digest, rows[chunk])
            out.flush()
            os.fsync(out.fileno())
        return digest.hexdigest()

    def rows_checksum(self, recompute: bool = False) -> str:
        """SHA-256 of the rows as they are read: dtype and shape bound to the file's bytes
        (hashed while writing; ``recompute`` streams the file again, e.g. to verify it)."""
        if recompute or self._bytes_sha256 is None:
            self._bytes_sha256 = file_sha256(self._rows_path)
        return rows_sha256(self._cache.dtype, self._cache.shape, self._bytes_sha256)

    def rows_state(self) -> Dict[str, object]:
        """The rows' shape and dtype (the rows stay in their file)."""
        dtype = str(self._cache.dtype).replace("torch.", "")
        return {"rows": {"shape": list(self._cache.shape), "dtype": dtype}}

    def rows_from_state(self, state: Dict[str, object], source: str) -> Tensor:
        """Map ``<source>.rows`` as :meth:`rows_state` describes it."""
        shape = state["rows"]["shape"]
        dtype = floating_dtype(state["rows"]["dtype"], source)
        if self._dtype is not None and dtype != self._dtype:
            raise ValueError(f"{source}: rows stored as {dtype}, configured {self._dtype}")
        if len(shape) != 2 or shape[1] != self.embedding_size:
            raise ValueError(
                f"{source}: rows of shape {shape}, expected width {self.embedding_size}"
            )
        self._rows_path = source + ROWS_SUFFIX
        self._bytes_sha256 = None
        return map_rows(self._rows_path, shape[0], shape[1], dtype)

    def save_cache(self, path: str) -> None:
        """Move the rows file to ``<path>.rows`` and write ``path`` (offsets, meta, shape)."""
        target = path + ROWS_SUFFIX
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        os.replace(self._rows_path, target)  # the mapping stays valid across the rename
        self._rows_path = target
        super().save_cache(path)

    def reset_cache(self) -> None:
        """Drop the mapping and fill state (files are left to the cache directory)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._digest = self._bytes_sha256 = None
        super().reset_cache()


DiskCacheEncoder = DiskStore  # the name before stores had their own
