"""Reads of a loader's data for the cache (:func:`fill_loader`; :func:`store_layouts`, how
each read lays out its labels) and cached augmented views (``CacheConfig(views=K)``): K
seeded reads of each object, and the view each training epoch serves.

Item ``i`` of view ``v`` is read under a random state seeded by ``(v, i)`` alone, so a
random transform gives the same view on every rank, with any batching or number of
workers, and in every run. View 0 keeps the sample's own key; view ``v > 0`` is stored under
``(v, key)``. Epoch ``e`` serves view :func:`epoch_views` ``(e, n, K)[i]`` of position ``i``.
"""

import hashlib
import random
import itertools
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from quaterion.dataset.label_cache_dataset import labels_only
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache.cache_config import CacheConfig

VIEW_SEED = "quaterion-cache-views"
SAMPLE_SIZE = 32
SAMPLE_SEED = "quaterion-content-sample"
_DROP_PARAMS = (
    "collate_fn",
    "batch_sampler",
    "sampler",
    "shuffle",
    "batch_size",
    "drop_last",
    "num_workers",
    "generator",  # the fill is unshuffled: drawing a seed from it would change the shuffles
)


def _seed(*parts: Any) -> int:
    text = ":".join(str(part) for part in (VIEW_SEED, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class ViewDataset(Dataset):
    """``dataset`` read as view ``view``: each item under its own seeded random state
    (torch, numpy and Python ``random``; the caller's state is restored afterwards)."""

    def __init__(self, dataset: Dataset, view: int):
        self.dataset = dataset
        self.view = view

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        seed = _seed(self.view, index)
        with isolate_rng(include_cuda=False):
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            return self.dataset[index]


def view_keys(keys: List[Hashable], view: int) -> List[Hashable]:
    """The store keys of ``keys`` in view ``view`` (view 0: the keys themselves)."""
    return list(keys) if view == 0 else [(view, key) for key in keys]


def epoch_views(epoch: int, size: int, views: int) -> Tensor:
    """``int64 (size,)``: the view each position serves in ``epoch`` (the same everywhere)."""
    generator = torch.Generator().manual_seed(_seed("epoch", epoch))
    return torch.randint(views, (size,), generator=generator)


def fill_loader(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    collate_fn: Optional[Callable] = None,
    dataset: Optional[Dataset] = None,
) -> DataLoader:
    """Plain, unshuffled ``DataLoader`` with the fill settings: ``CacheConfig.batch_size``,
    ``CacheConfig.num_workers`` (``None``: the loader's) and the loader's other arguments.

    It reads ``dataset`` (default ``loader.dataset``) through ``collate_fn`` (default the
    loader's own ``collate_fn``).
    """
    params = {k: v for k, v in loader.original_params.items() if k not in _DROP_PARAMS}
    workers = loader.num_workers if cache_config.num_workers is None else cache_config.num_workers
    if workers == 0:
        params.pop("persistent_workers", None)
        params.pop("prefetch_factor", None)
    return DataLoader(
        loader.dataset if dataset is None else dataset,
        collate_fn=collate_fn or loader.collate_fn,
        batch_size=cache_config.batch_size or 32,
        shuffle=False,
        num_workers=workers,
        **params,
    )


def sample_positions(length: int, size: int = SAMPLE_SIZE) -> List[int]:
    """``size`` positions out of ``length`` (all if fewer): one in each of ``size`` equal
    strides, at an offset drawn from a seeded hash of the stride's number (the same on every
    machine and run)."""
    if length <= size:
        return list(range(length))
    positions = []
    for k in range(size):
        start, stop = k * length // size, (k + 1) * length // size
        seeded = hashlib.sha256(f"{SAMPLE_SEED}:{k}".encode()).digest()
        positions.append(start + int.from_bytes(seeded[:8], "little") % (stop - start))
    return positions


class SampleItems:
    """The content sample of ``dataset``, read on each iteration: its items at
    :func:`sample_positions`, each under the seeded random state of view 0 (a random
    transform samples the same content in every run); the first :data:`SAMPLE_SIZE` items of
    an iterable dataset."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.dataset, torch.utils.data.IterableDataset):
            return itertools.islice(iter(self.dataset), SAMPLE_SIZE)
        seeded = ViewDataset(self.dataset, 0)
        return (seeded[position] for position in sample_positions(len(self.dataset)))


def batches_from_store(loader: SimilarityDataLoader) -> bool:
    """Whether a fully cached fit can serve ``loader``'s batches from the store alone: a
    sized, map-style loader whose class keeps its layout, with the class's own collate."""
    try:
        if isinstance(loader.dataset, torch.utils.data.IterableDataset) or len(loader.dataset) < 0:
            return False
    except TypeError:
        return False
    layout = type(loader)
    return layout.keeps_batch_layout() and loader.original_params["collate_fn"] == (
        layout.pre_collate_fn
    )


def store_layouts(loaders: Dict[str, SimilarityDataLoader]) -> Dict[str, Optional[type]]:
    """Split -> the loader class that lays out its batches when they can come from the store
    (:func:`batches_from_store`), else ``None``: decided once, handed to the fill, the
    fingerprints and the serving."""
    return {split: type(dl) if batches_from_store(dl) else None for split, dl in loaders.items()}


class _Pass:
    """Collate of the fingerprint pass: ids, labels, collated encoder inputs."""

    def __init__(self, pre_collate_fn, collates: Dict[str, Any], layout: Optional[type]):
        self.pre_collate_fn = pre_collate_fn
        self.layout = layout
        self.collates = collates

    def __call__(self, batch):
        ids = np.array([item[0] for item in batch], dtype=np.uint64)
        if self.layout is not None:
            _, features, labels = self.pre_collate_fn(batch)
            labels = self.layout.label_columns(labels)
        else:  # other layouts: the label-only samples themselves
            labels = [repr(labels_only(item[1])) for item in batch]
            features = self.pre_collate_fn(batch)[1] if self.collates else None
        inputs = {name: collate(features) for name, collate in self.collates.items()}
        return ids, labels, inputs


def data_pass(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    collates: Dict[str, Any],
    layout: Optional[type],
) -> DataLoader:
    """One ordered read of ``loader.dataset`` in fill batches, each batch as ids, labels
    (``layout.label_columns`` for a loader served from the store, else the label-only
    samples) and every encoder's collate of the inputs (``collates``: name -> collate)."""
    pass_collate = _Pass(loader.original_params["collate_fn"], collates, layout)
    return fill_loader(loader, cache_config, pass_collate)


def data_reads(
    loaders: Dict[str, SimilarityDataLoader],
    cache_config: CacheConfig,
    collates: Dict[str, Any],
    layouts: Dict[str, Optional[type]],
) -> Dict[str, Tuple[SampleItems, DataLoader]]:
    """Split -> the two reads its data fingerprint takes, neither started yet: the content
    sample and the :func:`data_pass`."""
    return {
        split: (SampleItems(dl.dataset), data_pass(dl, cache_config, collates, layouts[split]))
        for split, dl in loaders.items()
    }
