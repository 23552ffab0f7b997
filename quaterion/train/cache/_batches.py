"""How batches reach a cached fit: keys in place of the objects of cached encoders
(:class:`CacheTrainCollator`, fill and training), or, for a fully cached split, store rows
and labels, never the raw data.

After the fill, every dataset position of a split is known by its sample id and its
label-only sample. A batch is then a handful of tensor gathers: the store rows of its
objects (``int64``, what a cache encoder's ``forward`` indexes) and its labels, in the same
layout the loader's own collate gives (§4.8 of the training spec, rows instead of keys).
"""

from collections import defaultdict
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset
from typing_extensions import override

from quaterion.dataset.loader_state import BatchOrderState
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.dataset.train_collator import TrainCollator
from quaterion.train.cache._run import CacheRun
from quaterion.train.cache._views import epoch_views, view_keys
from quaterion.train.cache.cache_encoder import CacheMode
from quaterion.train.cache.cache_config import KeyExtractorType
from quaterion.train.cache.store import CacheStore
from quaterion_models.encoders import Encoder
from quaterion_models.types import CollateFnType, MetaExtractorFnType
from quaterion_models.utils.meta import merge_meta


class CacheTrainCollator(TrainCollator):
    """:class:`TrainCollator` for cached encoders.

    FILL mode gives each cached encoder ``(unseen_keys, unseen_objects)`` (every key once per
    process) and leaves meta per encoder; TRAIN mode gives the list of keys and merges meta.
    Non-cached encoders get the objects unchanged (and are skipped while filling).

    Args:
        pre_collate_fn: the loader's pre-collate function.
        encoder_collates: encoder name -> collate function (cache encoders included).
        meta_extractors: encoder name -> meta extractor.
        key_extractors: encoder name -> custom key function; default keys are the sample ids.
        cachable_encoders: names of the cached encoders.
        mode: initial :class:`CacheMode`.
    """

    def __init__(
        self,
        pre_collate_fn: Callable,
        encoder_collates: Dict[str, CollateFnType],
        meta_extractors: Dict[str, MetaExtractorFnType],
        key_extractors: Dict[str, KeyExtractorType],
        cachable_encoders: List[str],
        mode: CacheMode,
    ):
        super().__init__(pre_collate_fn, encoder_collates, meta_extractors)
        self.cachable_encoders = cachable_encoders
        self.mode = mode
        self.key_extractors = key_extractors
        self.seen_keys = defaultdict(set)

    @classmethod
    def for_loader(
        cls,
        loader: SimilarityDataLoader,
        encoders: Dict[str, Encoder],
        cachable_encoders: List[str],
        key_extractors: Dict[str, KeyExtractorType],
        mode: CacheMode,
    ) -> "CacheTrainCollator":
        """A collator in ``mode`` over ``loader``'s original pre-collate and the collates and
        meta extractors of ``encoders`` (the cached ones named in ``cachable_encoders``)."""
        return cls(
            pre_collate_fn=loader.original_params["collate_fn"],
            encoder_collates={name: enc.get_collate_fn() for name, enc in encoders.items()},
            meta_extractors={n: enc.get_meta_extractor() for n, enc in encoders.items()},
            key_extractors=dict(key_extractors),
            cachable_encoders=list(cachable_encoders),
            mode=mode,
        )

    def extract_keys(
        self, ids: Sequence[Hashable], features: List[Any], encoder_name: str
    ) -> List[Hashable]:
        """Custom keys from ``key_extractors[encoder_name]``, else the sample ids."""
        extractor = self.key_extractors.get(encoder_name)
        if extractor is None:
            return list(ids)
        keys = [extractor(obj) for obj in features]
        for key in keys:
            try:
                hash(key)
            except TypeError:
                raise TypeError(
                    f"Key extractor for encoder {encoder_name!r} returned an unhashable key of "
                    f"type {type(key).__name__} ({key!r:.80}); cache keys must be hashable and "
                    "deterministic across processes, e.g. a str or int (for a list, return a tuple)"
                ) from None
            if isinstance(key, torch.Tensor) or _identity_hashed(key):
                raise TypeError(
                    f"Key extractor for encoder {encoder_name!r} returned a {type(key).__name__} "
                    "key, hashed by identity: it is another key in another process, worker or "
                    "run. Return a value, e.g. a str, an int or a tuple (tuple(t.tolist()))"
                )
        return keys

    @override
    def pre_encoder_collate(self, features, ids=None, encoder_name=None):
        """Objects (non-cached), ``(unseen_keys, unseen_objects)`` (FILL) or keys (TRAIN)."""
        if encoder_name not in self.cachable_encoders:
            return features
        keys = self.extract_keys(ids, features, encoder_name)
        if self.mode == CacheMode.TRAIN:
            return keys
        if self.mode == CacheMode.FILL:
            seen = self.seen_keys[encoder_name]
            unseen = {}  # key -> its first object in the batch
            for key, obj in zip(keys, features):
                if key not in seen:
                    unseen.setdefault(key, obj)
            seen.update(unseen)
            return list(unseen), list(unseen.values())
        raise NotImplementedError(f"Cache mode {self.mode} is not implemented")

    def process_meta(self, meta: Dict[str, List[dict]]) -> Any:
        """Per-encoder meta (FILL) or one merged dict per object (TRAIN)."""
        if self.mode == CacheMode.FILL:
            return meta
        if self.mode == CacheMode.TRAIN:
            return super().process_meta(meta)
        raise NotImplementedError(f"Cache mode {self.mode} is not implemented")

    @override
    def collated_encoders(self) -> List[str]:
        """Every encoder (TRAIN) or only the cached ones (FILL: nothing else runs then)."""
        if self.mode == CacheMode.FILL:
            return list(self.cachable_encoders)
        return super().collated_encoders()


def _identity_hashed(key: Any) -> bool:
    """Whether ``key`` hashes and compares by identity (a plain object, not a singleton or a
    class): a copy of it, made in another process, is another key."""
    return type(key).__hash__ is object.__hash__ and key is not None and not isinstance(key, type)


class CachedSplit:
    """Per dataset position of one loader: its sample id and its label columns.

    Args:
        ids: ``uint64 (n,)`` sample ids (the default cache keys).
        columns: label tensors with one entry per position: ``{"groups"}`` for a group
            loader, ``{"labels", "subgroups"}`` for a pairs loader.
    """

    def __init__(self, ids: np.ndarray, columns: Dict[str, Tensor]):
        if any(len(column) != len(ids) for column in columns.values()):
            raise ValueError(f"label columns of another length than the {len(ids)} ids")
        self.ids = ids
        self.columns = columns

    def __len__(self) -> int:
        return len(self.ids)


class RowMeta:
    """Meta records of a batch, built on access.

    Not a ``list``, so Lightning moves a batch to the device without walking one dict per
    row; it indexes, iterates and compares like the list of merged meta dicts it stands for.
    """

    def __init__(self, records: Optional[List[dict]], positions: Sequence[int]):
        self.records = records
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict:
        if self.records is None:
            return {}
        return dict(self.records[self.positions[index]])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: Any) -> bool:
        return list(self) == list(other)


class CachedRows(Dataset):
    """Whole batches of a cached split by position, through ``__getitems__``.

    Args:
        loader: the loader the split belongs to (its class fixes the batch layout).
        split: ids and label-only samples per position.
        encoders: the cached encoders (all of the model's encoders).
        views: stored views per object; each epoch serves one of them per position, see
            :func:`~quaterion.train.cache._views.epoch_views`.
        epoch: the current training epoch (``trainer.current_epoch``: restored on resume,
            so a resumed run serves the views of an uninterrupted one).
    """

    def __init__(
        self,
        loader: SimilarityDataLoader,
        split: CachedSplit,
        encoders: Dict[str, CacheStore],
        views: int = 1,
        epoch: Callable[[], int] = int,
    ):
        self.split = split
        self.layout = type(loader)
        self.carry = {name: enc.host_rows for name, enc in encoders.items()}
        keys = self.layout.object_ids(split.ids.tolist())
        self.copies = len(keys) // max(len(split), 1)  # objects per sample
        # rows[name][v, j, i]: store row of view v of object j of the sample at position i
        self.rows = {
            name: torch.stack(
                [enc.rows_for_keys(view_keys(keys, v)).view(-1, len(split)) for v in range(views)]
            )
            for name, enc in encoders.items()
        }
        self.views, self.epoch, self.chosen = views, epoch, (None, None)
        self.meta = None
        if any(len(enc.meta_cache) for enc in encoders.values()):
            records = {name: [enc.meta_cache[k] for k in keys] for name, enc in encoders.items()}
            self.meta = merge_meta(records)

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, positions: List[int]):
        idx = torch.as_tensor(positions, dtype=torch.long)
        if self.views == 1:
            picked = {name: rows[0][:, idx] for name, rows in self.rows.items()}
        else:
            epoch = self.epoch()
            if self.chosen[0] != epoch:
                self.chosen = epoch, epoch_views(epoch, len(self.split), self.views)
            view = self.chosen[1][idx]
            picked = {name: rows[view, :, idx].T for name, rows in self.rows.items()}
        data = {name: self.carry[name](rows.reshape(-1)) for name, rows in picked.items()}
        n = len(self.split)
        if self.meta is None:  # no meta to look up: no per-object positions to build
            objects = range(self.copies * len(positions))
        else:
            objects = [j * n + p for j in range(self.copies) for p in positions]
        features = {"data": data, "meta": RowMeta(self.meta, objects)}
        columns = {name: column[idx] for name, column in self.split.columns.items()}
        return features, self.layout.labels_from_columns(columns)


def _whole_batch(batch: Any) -> Any:
    return batch


class ServedLoader(BatchOrderState, DataLoader):
    """The ``DataLoader`` of :func:`served_loader`; its ``state_dict`` is that of a
    :class:`~quaterion.dataset.SimilarityDataLoader` on the same batch sampler, so a
    checkpoint of a cached fit resumes an uncached one and the reverse."""


def served_loader(loader: SimilarityDataLoader, rows: CachedRows) -> DataLoader:
    """Loader of ``loader``'s batches served from ``rows`` (the store), never the raw data.

    It shares ``loader``'s sampler (or batch sampler) and generator, so shuffling draws the
    same random numbers as iterating ``loader``, and its state in checkpoints is the batch
    sampler's, as ``loader``'s is.
    """
    if type(loader.batch_sampler) is BatchSampler:  # plain batching: Lightning can shard it
        batching = dict(
            sampler=loader.sampler, batch_size=loader.batch_size, drop_last=loader.drop_last
        )
    else:
        batching = {"batch_sampler": loader.batch_sampler}
    return ServedLoader(
        rows,
        collate_fn=_whole_batch,
        pin_memory=loader.pin_memory,
        generator=loader.generator,  # each epoch draws its seed from it, as ``loader`` does
        **batching,
    )


def serve_loaders(
    run: CacheRun, splits: Dict[str, Optional[CachedSplit]], epoch: Callable[[], int]
) -> Dict[str, DataLoader]:
    """How each of ``run``'s loaders' batches reach a cached fit.

    When every encoder is cached with default keys (:attr:`CacheRun.full`), each loader
    that can be is served from the store: returns split -> loader of store-served batches
    (the training split's views chosen by ``epoch()``); marks each ``full_cache_used``.
    Every loader itself gets a TRAIN-mode :class:`CacheTrainCollator` (the keys of each
    cached encoder's objects in place of the objects): the batches of a loader the store
    does not serve.
    """
    served = {}
    for split, loader in run.loaders.items():
        cached = splits.get(split)
        usable = run.full and cached is not None and run.layouts[split] is not None
        if usable and len(cached) == len(loader.dataset):  # a layout: sized
            rows = CachedRows(loader, cached, run.stores, run.views(split), epoch)
            served[split] = served_loader(loader, rows)
        loader.full_cache_used = split in served
        loader.collate_fn = CacheTrainCollator.for_loader(  # the loader itself yields keys
            loader, run.encoders, list(run.stores), run.key_extractors, CacheMode.TRAIN
        )
    return served
