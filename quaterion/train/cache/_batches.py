"""Training batches of a fully cached split: store rows and labels, never the raw data.

After the fill, every dataset position of a split is known by its sample id and its
label-only sample. A batch is then a handful of tensor gathers: the store rows of its
objects (``int64``, what a cache encoder's ``forward`` indexes) and its labels, in the same
layout the loader's own collate gives (§4.8 of the training spec, rows instead of keys).
"""

import weakref
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset

from quaterion.dataset.similarity_data_loader import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityDataLoader,
)
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion_models.utils.meta import merge_meta


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


def label_columns(loader: SimilarityDataLoader, labels: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The per-position label columns of a batch's collated ``labels``."""
    if isinstance(loader, PairsSimilarityDataLoader):
        return {
            "labels": labels["labels"],
            "subgroups": labels["subgroups"][: len(labels["labels"])],
        }
    return {"groups": labels["groups"]}


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


def batches_from_store(loader: SimilarityDataLoader) -> bool:
    """Whether a fully cached fit can serve ``loader``'s batches from the store alone: a
    sized, map-style Group or Pairs loader with the class's own collate, label and flatten
    functions."""
    try:
        if isinstance(loader.dataset, torch.utils.data.IterableDataset) or len(loader.dataset) < 0:
            return False
    except TypeError:
        return False
    cls, pre_collate = type(loader), loader.original_params["collate_fn"]
    for base in (GroupSimilarityDataLoader, PairsSimilarityDataLoader):
        if isinstance(loader, base):
            return (
                cls.collate_labels.__func__ is base.collate_labels.__func__
                and cls.flatten_objects.__func__ is base.flatten_objects.__func__
                and getattr(pre_collate, "__func__", None) is cls.pre_collate_fn.__func__
            )
    return False


class CachedRows(Dataset):
    """Whole batches of a cached split by position, through ``__getitems__``.

    Args:
        loader: the loader the split belongs to (its class fixes the batch layout).
        split: ids and label-only samples per position.
        encoders: the cached encoders (all of the model's encoders).
    """

    def __init__(
        self, loader: SimilarityDataLoader, split: CachedSplit, encoders: Dict[str, CacheEncoder]
    ):
        self.split = split
        self.pairs = isinstance(loader, PairsSimilarityDataLoader)
        self.carry = {name: enc.host_rows for name, enc in encoders.items()}
        ids = split.ids.tolist()
        keys = ids + [i + 1 for i in ids] if self.pairs else ids
        # rows[name][j, i]: store row of object j of the sample at position i
        self.rows = {
            name: enc.rows_for_keys(keys).view(-1, len(split)) for name, enc in encoders.items()
        }
        self.meta = None
        if any(len(enc.meta_cache) for enc in encoders.values()):
            records = {name: [enc.meta_cache[k] for k in keys] for name, enc in encoders.items()}
            self.meta = merge_meta(records)

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, positions: List[int]):
        idx = torch.as_tensor(positions, dtype=torch.long)
        data = {
            name: self.carry[name](rows[:, idx].reshape(-1)) for name, rows in self.rows.items()
        }
        n, copies = len(self.split), 2 if self.pairs else 1
        if self.meta is None:  # no meta to look up: no per-object positions to build
            objects = range(copies * len(positions))
        else:
            objects = [j * n + p for j in range(copies) for p in positions]
        features = {"data": data, "meta": RowMeta(self.meta, objects)}
        columns = {name: column[idx] for name, column in self.split.columns.items()}
        if not self.pairs:
            return features, columns
        first = torch.arange(len(positions), dtype=torch.long)
        return features, {
            "pairs": torch.stack([first, first + len(positions)], dim=1),
            "labels": columns["labels"],
            "subgroups": columns["subgroups"].repeat(2),
        }


def _whole_batch(batch: Any) -> Any:
    return batch


_REGISTRY: "weakref.WeakKeyDictionary[SimilarityDataLoader, CachedRows]" = (
    weakref.WeakKeyDictionary()
)


def register(loader: SimilarityDataLoader, rows: Optional[CachedRows]) -> None:
    """Remember (or, with ``None``, forget) the cached rows of ``loader``, and set its
    ``full_cache_used`` accordingly."""
    loader.full_cache_used = rows is not None
    if rows is None:
        _REGISTRY.pop(loader, None)
    else:
        _REGISTRY[loader] = rows


def cached_split(loader: SimilarityDataLoader) -> Optional[CachedSplit]:
    """The cached split registered for ``loader``, if any."""
    rows = _REGISTRY.get(loader)
    return rows.split if rows is not None else None


def cached_loader(loader: Optional[SimilarityDataLoader]) -> Optional[DataLoader]:
    """Loader of ``loader``'s batches served from the store, or ``None`` if not cached so.

    It shares ``loader``'s sampler (or batch sampler) and generator, so shuffling draws the
    same random numbers as iterating ``loader``; it never reads the raw dataset.
    """
    rows = _REGISTRY.get(loader) if loader is not None else None
    if rows is None:
        return None
    if type(loader.batch_sampler) is BatchSampler:  # plain batching: Lightning can shard it
        batching = {
            "sampler": loader.sampler,
            "batch_size": loader.batch_size,
            "drop_last": loader.drop_last,
        }
    else:
        batching = {"batch_sampler": loader.batch_sampler}
    return DataLoader(
        rows,
        collate_fn=_whole_batch,
        pin_memory=loader.pin_memory,
        generator=loader.generator,  # each epoch draws its seed from it, as ``loader`` does
        **batching,
    )
