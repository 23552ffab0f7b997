"""Label-cache layer: remembers the label part of each sample, keyed by its id.

When every encoder is cached, training needs only labels; this layer lets later epochs
skip reading the dataset (see ``LabelCacheMode``). Label caches are pickles: load only
trusted files.
"""

import os
import pickle
import tempfile
from dataclasses import replace
from enum import Enum
from typing import Any, Dict, Iterator, Tuple

from torch.utils.data import Dataset, IterableDataset

from quaterion.dataset.indexing_dataset import IndexingDataset, IndexingIterableDataset
from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample


class LabelCacheMode(Enum):
    """``transparent``: pass items through; ``learn``: pass through and remember labels;
    ``read``: serve the remembered labels, ignoring the incoming item."""

    transparent = 0
    learn = 1
    read = 2


def _labels_only(sample: Any) -> Any:
    if isinstance(sample, SimilarityGroupSample):
        return replace(sample, obj=None)
    if isinstance(sample, SimilarityPairSample):
        return replace(sample, obj_a=None, obj_b=None)
    return None


def _write_pickle_atomic(obj: Any, path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory or ".", prefix=".tmp_label_cache_")
    try:
        with os.fdopen(fd, "wb") as file:
            pickle.dump(obj, file)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


class LabelCacheDatasetMixin:
    """State and logic shared by both label-cache layers: ``{sample id: label-only sample}``."""

    def __init__(self) -> None:
        self._cache: Dict[int, Any] = {}
        self._mode = LabelCacheMode.transparent

    @property
    def mode(self) -> LabelCacheMode:
        """Current :class:`LabelCacheMode`."""
        return self._mode

    def set_mode(self, mode: LabelCacheMode) -> None:
        """Switch mode; accepts a member or its value (``0``, ``1``, ``2``)."""
        try:
            self._mode = LabelCacheMode(mode)
        except ValueError:
            allowed = ", ".join(f"LabelCacheMode.{m.name}" for m in LabelCacheMode)
            raise ValueError(f"mode must be one of {allowed}; got {mode!r}.") from None

    @classmethod
    def _process_sample(cls, sample: Any) -> Any:
        """Copy of ``sample`` with its objects set to ``None``; ``None`` for other types."""
        return _labels_only(sample)

    def process_item(self, index: int, item: Any) -> Tuple[int, Any]:
        """Apply the mode to one ``(id, item)`` pair from the indexing layer."""
        if self._mode is LabelCacheMode.read:
            try:
                return index, self._cache[index]
            except KeyError:
                raise KeyError(
                    f"Sample id {index} is not in the label cache ({len(self._cache)} entries). "
                    "The cache is filled by one pass in LabelCacheMode.learn in this process "
                    "(no worker processes) with the same salt, or by load()."
                ) from None
        if self._mode is LabelCacheMode.learn:
            self._cache[index] = self._process_sample(item)
        return index, item

    def save(self, path: str) -> None:
        """Pickle the cache to ``path`` atomically, creating the parent directory."""
        _write_pickle_atomic(self._cache, path)

    def load(self, path: str) -> None:
        """Replace the cache with the one pickled at ``path`` (trusted files only)."""
        with open(path, "rb") as file:
            cache = pickle.load(file)
        if not isinstance(cache, dict):
            raise ValueError(
                f"Label cache file {path!r} holds a {type(cache).__name__}, expected a dict "
                "written by save(); delete it to rebuild the cache."
            )
        self._cache = cache


class LabelCacheDataset(Dataset, LabelCacheDatasetMixin):
    """Map-style label-cache layer over an :class:`IndexingDataset`.

    ``__getitem__(i)`` returns ``process_item(*dataset[i])``: ``(id, sample)``.
    """

    def __init__(self, dataset: IndexingDataset):
        LabelCacheDatasetMixin.__init__(self)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[int, Any]:
        hash_id, item = self.dataset[index]
        return self.process_item(hash_id, item)


class LabelCacheIterableDataset(IterableDataset, LabelCacheDatasetMixin):
    """Iterable label-cache layer over an :class:`IndexingIterableDataset`."""

    def __init__(self, dataset: IndexingIterableDataset):
        LabelCacheDatasetMixin.__init__(self)
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[int, Any]:
        hash_id, item = self.dataset[index]
        return self.process_item(hash_id, item)

    def __iter__(self) -> Iterator[Tuple[int, Any]]:
        for hash_id, item in self.dataset:
            yield self.process_item(hash_id, item)
