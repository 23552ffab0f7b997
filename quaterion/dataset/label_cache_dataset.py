"""Label-cache layer: remembers the label part of each sample, keyed by its id.

When every encoder is cached, training needs only labels; this layer lets later epochs
skip reading the dataset (see ``LabelCacheMode``). Label files hold tensors and plain
containers only: they are read with ``torch.load(weights_only=True)`` and never run code.
"""

import os
from dataclasses import fields, replace
from enum import Enum
from typing import Any, Dict, Iterator, List, Tuple

import torch
from torch.utils.data import Dataset, IterableDataset

from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample
from quaterion_models.utils.files import save_torch


class LabelCacheMode(Enum):
    """``transparent``: pass items through; ``learn``: pass through and remember labels;
    ``read``: serve the remembered labels, ignoring the incoming item."""

    transparent = 0
    learn = 1
    read = 2


_SAMPLE_CLASSES = {cls.__name__: cls for cls in (SimilarityGroupSample, SimilarityPairSample)}


def labels_only(sample: Any) -> Any:
    """Copy of a similarity sample with its objects set to ``None``; ``None`` otherwise."""
    if isinstance(sample, SimilarityGroupSample):
        return replace(sample, obj=None)
    if isinstance(sample, SimilarityPairSample):
        return replace(sample, obj_a=None, obj_b=None)
    return None


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (int, float, str, bool)):
        return value.item()
    return value


def labels_to_plain(ids: List[Any], samples: List[Any]) -> Dict[str, Any]:
    """Ids and label-only samples as plain lists (``torch.load(weights_only=True)``-safe)."""
    kinds = ["" if sample is None else type(sample).__name__ for sample in samples]
    unknown = sorted(set(kinds) - set(_SAMPLE_CLASSES) - {""})
    if unknown:
        raise TypeError(f"cannot store the labels of a {unknown[0]}")
    values = [{f.name: _plain(getattr(s, f.name)) for f in fields(s)} if s else {} for s in samples]
    return {"ids": list(ids), "kinds": kinds, "values": values}


def labels_from_plain(state: Dict[str, Any]) -> Tuple[List[Any], List[Any]]:
    """Inverse of :func:`labels_to_plain`: ``(ids, samples)``."""
    samples = [
        _SAMPLE_CLASSES[kind](**record) if kind else None
        for kind, record in zip(state["kinds"], state["values"])
    ]
    return list(state["ids"]), samples


class LabelCacheDatasetMixin:
    """State and logic shared by both label-cache layers: ``{sample id: label-only sample}``
    over the indexing layer ``dataset``; ``self[i]`` is ``process_item(*dataset[i])``."""

    def __init__(self, dataset: Any = None) -> None:
        self.dataset = dataset
        self._cache: Dict[int, Any] = {}
        self._mode = LabelCacheMode.transparent

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[int, Any]:
        return self.process_item(*self.dataset[index])

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
        return labels_only(sample)

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
        """Write the cache to ``path`` atomically (plain lists, see :func:`labels_to_plain`)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        save_torch(labels_to_plain(list(self._cache), list(self._cache.values())), path)

    def load(self, path: str) -> None:
        """Replace the cache with the one at ``path`` (read with ``weights_only=True``)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"ids", "kinds", "values"} <= set(state):
            raise ValueError(
                f"Label cache file {path!r} holds a {type(state).__name__}, expected the dict "
                "written by save(); delete it to rebuild the cache."
            )
        try:
            ids, samples = labels_from_plain(state)
            if len(ids) != len(state["kinds"]) or len(ids) != len(state["values"]):
                raise ValueError("lists of different lengths")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"Label cache file {path!r} is damaged ({type(err).__name__}: {err}); delete it "
                "to rebuild the cache."
            ) from None
        self._cache = dict(zip(ids, samples))


class LabelCacheDataset(LabelCacheDatasetMixin, Dataset):
    """Map-style label-cache layer over an :class:`IndexingDataset`.

    ``__getitem__(i)`` returns ``process_item(*dataset[i])``: ``(id, sample)``.
    """


class LabelCacheIterableDataset(LabelCacheDatasetMixin, IterableDataset):
    """Iterable label-cache layer over an :class:`IndexingIterableDataset`."""

    def __iter__(self) -> Iterator[Tuple[int, Any]]:
        for hash_id, item in self.dataset:
            yield self.process_item(hash_id, item)
