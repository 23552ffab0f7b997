"""Cached augmented views (``CacheConfig(views=K)``): K seeded reads of each object, and the
view each training epoch serves.

Item ``i`` of view ``v`` is read under a random state seeded by ``(v, i)`` alone, so a
random transform gives the same view on every rank, with any batching or number of
workers, and in every run. View 0 keeps the sample's own key; view ``v > 0`` is stored under
``(v, key)``. Epoch ``e`` serves view :func:`epoch_views` ``(e, n, K)[i]`` of position ``i``.
"""

import hashlib
import random
from typing import Any, Hashable, List

import numpy as np
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from torch import Tensor
from torch.utils.data import Dataset

VIEW_SEED = "quaterion-cache-views"


def seeded_int(*parts: Any, nbytes: int = 4) -> int:
    """An integer of ``nbytes`` bytes hashed from ``parts`` joined by ``":"`` (SHA-256): the
    same on every machine and in every run."""
    text = ":".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:nbytes], "little")


class ViewDataset(Dataset):
    """``dataset`` read as view ``view``: each item under its own seeded random state
    (torch, numpy and Python ``random``; the caller's state is restored afterwards)."""

    def __init__(self, dataset: Dataset, view: int):
        self.dataset = dataset
        self.view = view

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        seed = seeded_int(VIEW_SEED, self.view, index)
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
    generator = torch.Generator().manual_seed(seeded_int(VIEW_SEED, "epoch", epoch))
    return torch.randint(views, (size,), generator=generator)
