"""Cache encoder that keeps every vector in one tensor in RAM or GPU memory."""

from typing import Dict, Hashable, List, Optional, Tuple

import torch
from torch import Tensor

from quaterion.distributed import gather_rows
from quaterion import distributed
from quaterion.train.cache.host_rows import HostRows, gather_to
from quaterion.train.cache.cache_config import CacheType
from quaterion.train.cache.cache_encoder import CacheCollateReturnType
from quaterion.train.cache.store import CacheStore
from quaterion_models.encoders import Encoder
from quaterion_models.types import TensorInterchange
from quaterion_models.utils.batch_checks import check_encoder_output
from quaterion_models.utils.files import save_torch


class MetaStore(dict):
    """Key -> meta record, holding only non-empty records (an absent key reads as ``{}``),
    so the usual empty meta costs nothing per key."""

    def __missing__(self, key: Hashable) -> dict:
        return {}


def _add_keys(
    offsets: Dict[Hashable, int], meta: Dict[Hashable, dict], keys: List[Hashable], records
) -> List[int]:
    """Give each of ``keys`` not in ``offsets`` the next row (the first one seen wins) and keep
    its meta record (``records[i]``, when not empty); returns the positions of those keys."""
    keep = []
    for i, key in enumerate(keys):
        if key not in offsets:
            offsets[key] = len(offsets)  # one row per distinct key
            if records[i]:
                meta[key] = records[i]
            keep.append(i)
    return keep


class InMemoryStore(CacheStore):
    """Keeps the wrapped encoder's outputs as rows of one ``(N, d)`` tensor.

    ``offset_map`` maps each key to its row and ``meta_cache`` to its meta record. Rows are
    numbered by the actual row count, so a repeated key never shifts later rows.

    Args:
        encoder: frozen encoder to wrap.
        cache_type: ``CPU`` keeps rows in host memory; ``AUTO`` on the trainer's device;
            ``GPU`` on CUDA.
        dtype: dtype the rows are stored in (e.g. ``torch.float16``); ``None`` keeps the
            encoder's. ``forward`` returns the encoder's own dtype either way.
        name: the encoder's key in the model (named in errors).
    """

    def __init__(
        self,
        encoder: Encoder,
        cache_type: str = CacheType.AUTO,
        dtype: Optional[torch.dtype] = None,
        name: str = "default",
    ):
        super().__init__(encoder)
        self.name = name or "default"
        self._cache_type = cache_type
        self._host = cache_type in (CacheType.CPU, CacheType.DISK)  # rows gathered on the host
        self._dtype = dtype
        self._out_dtype: Optional[torch.dtype] = None
        self._cache: Optional[Tensor] = None
        self._offset_map: Dict[Hashable, int] = {}
        self._meta_cache: Dict[Hashable, dict] = MetaStore()
        self._chunks: List[Tensor] = []
        self._output_device: Optional[torch.device] = None

    @property
    def cache_type(self) -> str:
        """Where the rows are kept."""
        return self._cache_type

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """dtype the rows are stored in (``None``: the encoder's)."""
        return self._dtype

    @property
    def offset_map(self) -> Dict[Hashable, int]:
        """Key -> row of the cache tensor."""
        return self._offset_map

    @property
    def meta_cache(self) -> Dict[Hashable, dict]:
        """Key -> meta record."""
        return self._meta_cache

    @property
    def cache(self) -> Optional[Tensor]:
        """The ``(N, d)`` cache tensor, or ``None`` before the fill ends."""
        return self._cache

    def place(self, device: torch.device) -> None:
        """Pin outputs to ``device`` and move AUTO/GPU rows there once (not per batch)."""
        device = torch.device(device)
        self._output_device = device
        if self._cache is None:
            return
        if self._cache_type == CacheType.GPU and device.type != "cuda":
            target = torch.device("cuda")
        elif self._host:
            target = torch.device("cpu")
        else:
            target = device
        self._cache = self._cache.to(target)

    def _default_device(self) -> torch.device:
        if self._output_device is not None:
            return self._output_device
        param = next(self._encoder.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def fill_cache(self, keys: List[Hashable], data: TensorInterchange, meta: List[dict]) -> None:
        """Encode ``data`` and append one row per key not cached yet.

        Checks the width of the outputs against ``embedding_size`` (what the head was built
        for) before anything is stored."""
        embeddings = self._encoder(data)
        check_encoder_output(self.name, self._encoder, embeddings)
        self._out_dtype = embeddings.dtype
        embeddings = embeddings.detach().to(device="cpu" if self._host else None, dtype=self._dtype)
        keep = _add_keys(self._offset_map, self._meta_cache, keys, meta)
        if len(keep) < len(keys):
            embeddings = embeddings[torch.tensor(keep, dtype=torch.long, device=embeddings.device)]
        self.append_rows(embeddings)

    def append_rows(self, rows: Tensor) -> None:
        """Keep the rows of one fill batch (joined by :meth:`finish_fill`)."""
        self._chunks.append(rows)

    def finish_fill(self) -> None:
        """Concatenate the fill chunks into ordinary (non-inference) tensor rows."""
        empty = torch.empty(0, self.embedding_size, dtype=self._dtype)
        with torch.inference_mode(False), torch.no_grad():
            self._cache = torch.cat(self._chunks or [empty])
        self._chunks = []
        if self._output_device is not None:
            self.place(self._output_device)

    def is_filled(self) -> bool:
        """Whether the cache tensor exists."""
        return self._cache is not None

    def reset_cache(self) -> None:
        """Drop rows, offsets, meta and fill state."""
        self._cache = None
        self._offset_map = {}
        self._meta_cache = MetaStore()
        self._chunks = []

    def rows_for_keys(self, keys: List[Hashable]) -> Tensor:
        """``int64 (len(keys),)`` rows of ``keys`` (CPU); unknown keys raise ``KeyError``."""
        offsets = self._offset_map
        try:
            return torch.tensor([offsets[key] for key in keys], dtype=torch.long)
        except KeyError as err:
            raise KeyError(
                f"Key {err.args[0]!r} is not in the cache of {type(self._encoder).__name__}: "
                "the data changed after the cache was filled, or the loader is not the one "
                "the cache was built for"
            ) from None

    def forward(self, batch: CacheCollateReturnType) -> Tensor:
        """Rows for a list of keys, an ``int64`` tensor of rows or :class:`HostRows`, on the
        model's device.

        A host store (``CPU``, ``DISK``) gathers on the host and copies only the rows to the
        device (pinned, ``non_blocking``); a device store gathers where it is."""
        if self._cache is None:
            raise RuntimeError(
                f"The cache of encoder {type(self._encoder).__name__} is empty: fill it "
                "(Quaterion.fit does) before using it"
            )
        if isinstance(batch, HostRows):
            rows, device = batch.rows, batch.device
        elif isinstance(batch, Tensor):
            rows, device = batch, batch.device
        else:
            rows, device = self.rows_for_keys(batch), self._default_device()
        if self._host:  # indices are (or go) there
            return gather_to(self._cache, rows.cpu(), device).to(dtype=self._out_dtype)
        if self._cache_type == CacheType.AUTO and self._cache.device != device:
            self.place(device)  # e.g. a cache loaded from disk: moved once, not per batch
        out = self._cache.index_select(0, rows.to(self._cache.device, non_blocking=True))
        return out.to(device=device, dtype=self._out_dtype, non_blocking=True)

    def host_rows(self, rows: Tensor) -> "Tensor | HostRows":
        """How a batch carries ``rows`` of this store: :class:`HostRows` (indices kept on
        the host) for a host store, the tensor itself (moved with the batch) otherwise."""
        return HostRows(rows) if self._host else rows

    def cache_extract_meta(self, batch: CacheCollateReturnType) -> List[dict]:
        """Wrapped meta for a FILL tuple; cached meta for a TRAIN key list."""
        if isinstance(batch, tuple):
            return self._encoder.get_meta_extractor()(batch[1])
        return [self._meta_cache[key] for key in batch]

    def gather_ranks(self) -> None:
        """Under DDP: replace this rank's rows by the rows of every rank (rank order; a key
        already seen on an earlier rank keeps that rank's row)."""
        keeps, counts = self.merge_rank_keys()
        device = self._cache.device
        rows = gather_rows(self._cache.to(distributed.collective_device()))[0].to(device)
        starts = [sum(counts[:rank]) for rank in range(len(counts))]
        take = [start + i for start, keep in zip(starts, keeps) for i in keep]
        self._cache = rows[torch.tensor(take, dtype=torch.long, device=device)]

    def merge_rank_keys(self) -> Tuple[List[List[int]], List[int]]:
        """Under DDP: take in every rank's keys and meta (rank order, the first rank to hold
        a key wins); returns, per rank, which of its rows to keep (in the new row order) and
        how many rows it held."""
        mine = sorted(self._offset_map, key=self._offset_map.__getitem__)  # in row order
        parts = distributed.gather_objects((mine, dict(self._meta_cache), self._out_dtype))
        self._out_dtype = next((dtype for *_, dtype in parts if dtype is not None), None)
        self._offset_map, self._meta_cache = {}, MetaStore()
        keeps = [
            _add_keys(self._offset_map, self._meta_cache, keys, [meta.get(k) for k in keys])
            for keys, meta, _ in parts
        ]
        return keeps, [len(keys) for keys, _, _ in parts]

    def state(self) -> Dict[str, object]:
        """``{"embeddings": (N, d) CPU tensor, "offsets": {key: row}, "meta": {key: dict},
        "output_dtype": name}`` (meta: non-empty records only)."""
        if self._cache is None:
            raise RuntimeError("Nothing to save: the cache is not filled")
        return {
            **self.rows_state(),
            "offsets": self._offset_map,
            "meta": dict(self._meta_cache),
            "output_dtype": str(self._out_dtype or self._cache.dtype).replace("torch.", ""),
        }

    def rows_state(self) -> Dict[str, object]:
        """The rows part of :meth:`state`: ``{"embeddings": (N, d) CPU tensor}``."""
        return {"embeddings": self._cache.cpu()}

    def rows_from_state(self, state: Dict[str, object], source: str) -> Tensor:
        """The rows :meth:`rows_state` describes (``source`` names the file in errors)."""
        embeddings = state["embeddings"]
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
            raise ValueError(f"{source}: 'embeddings' is not a 2-D tensor")
        if not embeddings.is_floating_point() or embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"{source}: 'embeddings' are {embeddings.dtype} of width {embeddings.shape[1]}, "
                f"expected floating rows of width {self.embedding_size}"
            )
        return embeddings

    def load_state(self, state: Dict[str, object], source: str = "state") -> None:
        """Restore what :meth:`state` returned (checked: rows and offsets one to one)."""
        rows, offsets = self.rows_from_state(state, source), state["offsets"]
        if len(offsets) != rows.shape[0] or sorted(offsets.values()) != list(range(rows.shape[0])):
            raise ValueError(f"{source}: offsets do not index the embedding rows one to one")
        self.reset_cache()
        self._cache = rows
        self._offset_map = dict(offsets)
        self._meta_cache = MetaStore(state["meta"])
        self._out_dtype = getattr(torch, state.get("output_dtype", ""), rows.dtype)
        if not self._host:
            self.place(self._default_device())

    def save_cache(self, path: str) -> None:
        """Write rows, offsets and meta atomically to ``path`` (tensors and plain dicts)."""
        save_torch(self.state(), path)

    def load_cache(self, path: str) -> None:
        """Read a file written by :meth:`save_cache` (``weights_only=True``)."""
        self.load_state(torch.load(path, map_location="cpu", weights_only=True), path)


InMemoryCacheEncoder = InMemoryStore  # the name before stores had their own
