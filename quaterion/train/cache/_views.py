"""Reads of a loader's data for the cache (:func:`fill_loader`) and cached augmented views
(``CacheConfig(views=K)``): K seeded reads of each object, and the view each training epoch
serves.

Item ``i`` of view ``v`` is read under a random state seeded by ``(v, i)`` alone, so a
random transform gives the same view on every rank, with any batching or number of
workers, and in every run. View 0 keeps the sample's own key; view ``v > 0`` is stored under
``(v, key)``. Epoch ``e`` serves view :func:`epoch_views` ``(e, n, K)[i]`` of position ``i``.
"""

import hashlib
import random
from typing import Any, Callable, Hashable, List, Optional

import numpy as np
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache.cache_config import CacheConfig

VIEW_SEED = "quaterion-cache-views"
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
