"""Indexing layer: gives every item a reproducible 64-bit id (the embedding-cache key)."""

import random
from collections.abc import Sized
from typing import Any, Iterator, Tuple

import mmh3
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from quaterion.dataset.similarity_dataset import sized_len


def hashit(obj: Any, salt: Any) -> int:
    """Normative item id: MurmurHash3 x64-128 (seed 0) of ``str(obj) + str(salt)``.

    Returns:
        The first unsigned 64-bit half, a Python ``int`` in ``[0, 2**64)``; e.g.
        ``hashit(0, "train") == 10637058102396794888``.
    """
    return mmh3.hash64(bytes(str(obj) + str(salt), "utf-8"), signed=False)[0]


def _random_salt() -> int:
    return random.randint(0, 2**31)


def _worker_descriptor() -> tuple[int, int] | None:
    """``(worker id, number of workers)`` inside a DataLoader worker, ``None`` in the main process."""
    info = get_worker_info()
    return None if info is None else (info.id, info.num_workers)


class _IndexingLayer:
    """Members shared by both indexing layers: salt, skip-read, length and indexed reads."""

    def __init__(self, dataset: Dataset, salt: Any = None):
        self.dataset = dataset
        self.salt = _random_salt() if salt is None else salt
        self._skip_read = False

    def set_salt(self, salt: Any) -> None:
        """Use ``salt`` for the ids from now on (training sets ``"train"`` / ``"val"``)."""
        self.salt = salt

    def set_skip_read(self, skip: bool) -> None:
        """While ``True``, items are ``None`` and the wrapped dataset is never read."""
        self._skip_read = bool(skip)

    def __len__(self) -> int:
        return sized_len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[int, Any]:
        item = None if self._skip_read else self.dataset[index]
        return hashit(index, self.salt), item


class IndexingDataset(_IndexingLayer, Dataset):
    """Map-style layer returning ``(hashit(index, salt), item)`` for every index.

    Args:
        dataset: wrapped map-style dataset (a plain list works).
        salt: mixed into every id; ``None`` picks a random one once, at construction, so
            worker processes (which get a copy) agree on the ids.

    ``set_salt(salt)`` changes the salt; ``set_skip_read(True)`` makes items ``None`` without
    reading the wrapped dataset.
    """


class IndexingIterableDataset(_IndexingLayer, IterableDataset):
    """Iterable layer yielding ``(hashit((worker, position), salt), item)``.

    ``worker`` is ``None`` in the main process and ``(worker id, num_workers)`` in a
    DataLoader worker; ``position`` counts the items that worker yields. Sharding across
    workers is the wrapped dataset's job, as for any ``IterableDataset``.

    Args:
        dataset: wrapped iterable dataset.
        salt: as for :class:`IndexingDataset`.

    ``set_salt`` / ``set_skip_read`` work as for :class:`IndexingDataset`; while skip-read is
    on and the wrapped dataset is sized, iteration yields ``None`` items without reading it.
    """

    def __iter__(self) -> Iterator[Tuple[int, Any]]:
        worker = _worker_descriptor()
        salt = self.salt
        if self._skip_read and isinstance(self.dataset, Sized):
            for idx in range(len(self.dataset)):
                yield hashit((worker, idx), salt), None
            return
        for idx, item in enumerate(self.dataset):
            yield hashit((worker, idx), salt), item
