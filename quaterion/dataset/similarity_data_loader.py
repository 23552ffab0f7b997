"""Similarity data loaders: wrap a dataset of similarity samples for training."""

from typing import Any, Dict, Generic, List, Tuple, TypeVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset
from typing_extensions import override

from quaterion.dataset.group_cycle_sampler import GroupCycleBatchSampler
from quaterion.dataset._label_checks import as_float_tensor, as_int_list, check_sample_types
from quaterion.dataset.indexing_dataset import IndexingDataset, IndexingIterableDataset
from quaterion.dataset.label_cache_dataset import (
    LabelCacheDataset,
    LabelCacheIterableDataset,
    LabelCacheMode,
)
from quaterion.dataset.loader_state import BatchOrderState
from quaterion.dataset.similarity_samples import SimilarityGroupSample, SimilarityPairSample
from quaterion.dataset.train_collator import TrainCollator

T_co = TypeVar("T_co", covariant=True)


def _build_layers(dataset: Dataset) -> Tuple[Any, Any]:
    """``(indexing layer, label-cache layer)`` for ``dataset``, reusing existing layers.

    A loader re-created from ``loader.dataset`` (as Lightning does) must not wrap again.
    """
    if not isinstance(dataset, (Dataset, IterableDataset)) and not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset must be a map-style dataset (anything with __getitem__ and __len__, e.g. a "
            f"list of samples) or a torch IterableDataset, got {type(dataset).__name__}. Wrap an "
            "iterator or generator in a torch.utils.data.IterableDataset."
        )
    if isinstance(dataset, (LabelCacheDataset, LabelCacheIterableDataset)):
        return dataset.dataset, dataset
    if isinstance(dataset, IndexingIterableDataset):
        return dataset, LabelCacheIterableDataset(dataset)
    if isinstance(dataset, IndexingDataset):
        return dataset, LabelCacheDataset(dataset)
    if isinstance(dataset, IterableDataset):
        indexing = IndexingIterableDataset(dataset)
        return indexing, LabelCacheIterableDataset(indexing)
    indexing = IndexingDataset(dataset)
    return indexing, LabelCacheDataset(indexing)


def _check_iterable_options(loader: str, kwargs: Dict[str, Any]) -> None:
    """Raise ``ValueError`` for an option an iterable dataset cannot honour (torch's own
    error names none of the fixes)."""
    chosen = [name for name in ("sampler", "batch_sampler") if kwargs.get(name) is not None]
    if kwargs.get("shuffle"):
        chosen.insert(0, "shuffle=True")
    if chosen:
        raise ValueError(
            f"{loader}: {' and '.join(chosen)} cannot be used with an IterableDataset, whose "
            "__iter__ alone decides the order. Shuffle inside the dataset (e.g. a shuffle "
            "buffer in __iter__), or pass a map-style dataset (a list of samples works) to "
            "shuffle or sample it here."
        )


def _callable_name(function: Any) -> str:
    """``Class.method`` / ``function`` / ``ClassName`` of a collate callable, for messages."""
    return getattr(function, "__qualname__", None) or type(function).__name__


class SimilarityDataLoader(BatchOrderState, DataLoader[T_co], Generic[T_co]):
    """``DataLoader`` over similarity samples; items become ``(id, sample)`` pairs.

    The dataset is wrapped in an indexing layer (reproducible ids, the cache keys) and a
    label-cache layer; ``loader.dataset`` is the latter. Iterating a fresh loader yields
    ``(feature_ids, features, labels)`` from :meth:`pre_collate_fn`; training replaces
    ``collate_fn`` with a :class:`~quaterion.dataset.train_collator.TrainCollator`.

    ``state_dict`` / ``load_state_dict`` hold the state of the batch sampler (``None`` for
    one that keeps none): Lightning saves it in checkpoints, so a fit resumed from one
    continues e.g. a :class:`~quaterion.dataset.GroupCycleBatchSampler`'s order.

    Args:
        dataset: map-style (a list works) or iterable dataset of samples, or the
            ``dataset`` of an existing loader (re-used, not wrapped again).
        **kwargs: any other ``DataLoader`` argument, by keyword. A custom ``collate_fn``
            must follow :meth:`pre_collate_fn`'s contract.
    """

    def __init__(self, dataset: Dataset, **kwargs: Any):
        if (
            "batch_size" in kwargs
            and kwargs["batch_size"] is None
            and not kwargs.get("batch_sampler")
        ):
            raise ValueError(
                f"{type(self).__name__}: batch_size=None (no batching) is not supported: the "
                "loader collates lists of samples into batches. Pass an int batch_size (e.g. "
                "batch_size=32) or a batch_sampler."
            )
        if kwargs.get("collate_fn") is None:
            kwargs["collate_fn"] = type(self).pre_collate_fn
        collate_fn = kwargs["collate_fn"]
        if isinstance(collate_fn, TrainCollator):
            self._original_params = {**kwargs, "collate_fn": collate_fn.pre_collate_fn}
        else:
            self._original_params = kwargs
        self._indexing_dataset_layer, self._label_cache_layer = _build_layers(dataset)
        if isinstance(self._label_cache_layer, IterableDataset):
            _check_iterable_options(type(self).__name__, kwargs)
        self._original_dataset = self._indexing_dataset_layer.dataset
        self._served_from_cache = False
        self._workers_collate: Any = None  # collate_fn of live persistent workers, if any
        batch_sampler = kwargs.get("batch_sampler")
        if isinstance(batch_sampler, GroupCycleBatchSampler):
            batch_sampler.check_dataset(self._label_cache_layer)
        super().__init__(self._label_cache_layer, **kwargs)

    def __iter__(self) -> Any:
        """``DataLoader.__iter__``; notes the ``collate_fn`` persistent workers start with."""
        if self.persistent_workers and self.num_workers > 0:
            self._workers_collate = self.collate_fn
        return super().__iter__()

    def __setattr__(self, name: str, value: Any) -> None:
        # persistent workers keep the collate_fn they were started with: refuse to change it
        # under them (torch would go on collating with the old one)
        started = self.__dict__.get("_workers_collate")
        if name == "collate_fn" and started is not None and started != value:
            raise RuntimeError(
                f"{type(self).__name__}: its persistent workers were started by an earlier "
                f"iteration with collate_fn {_callable_name(started)} and would keep "
                f"collating with it instead of {_callable_name(value)} (e.g. the loader was "
                "iterated before Quaterion.fit). Iterate a separate loader outside the fit, "
                "or build this one with persistent_workers=False."
            )
        super().__setattr__(name, value)

    def workers_stopped(self) -> None:
        """Note that the persistent workers were shut down (Lightning does so when a fit
        ends), so the next iteration may start them with a new ``collate_fn``."""
        self._workers_collate = None

    @property
    def full_cache_used(self) -> bool:
        """``True`` while a fully cached fit serves this loader's batches from the cache
        store (the raw dataset is not read), or once the label-cache mode is not
        ``transparent``; settable (the cache sets it)."""
        served = self._served_from_cache
        return served or self._label_cache_layer.mode is not LabelCacheMode.transparent

    @full_cache_used.setter
    def full_cache_used(self, used: bool) -> None:
        self._served_from_cache = bool(used)

    @property
    def original_params(self) -> Dict[str, Any]:
        """Constructor kwargs; ``"collate_fn"`` is the pre-collate function, always present."""
        return self._original_params

    def set_salt(self, salt: Any) -> None:
        """Salt of the ids (training uses ``"train"`` / ``"val"`` for stable cache keys)."""
        self._indexing_dataset_layer.set_salt(salt)

    def set_skip_read(self, skip: bool) -> None:
        """Stop (``True``) or resume reading the wrapped dataset; items become ``None``."""
        self._indexing_dataset_layer.set_skip_read(skip)

    def set_label_cache_mode(self, mode: LabelCacheMode) -> None:
        """Set the :class:`LabelCacheMode` of the label-cache layer."""
        self._label_cache_layer.set_mode(mode)

    def save_label_cache(self, path: str) -> None:
        """Pickle the label cache to ``path`` (atomic write)."""
        self._label_cache_layer.save(path)

    def load_label_cache(self, path: str) -> None:
        """Restore the label cache from ``path`` (trusted files only)."""
        self._label_cache_layer.load(path)

    @classmethod
    def pre_collate_fn(cls, batch: List[Tuple[int, Any]]) -> Tuple[List[int], List[Any], Any]:
        """Default collate: ``[(id, sample)] -> (feature_ids, features, labels)``."""
        ids = [item[0] for item in batch]
        samples = [item[1] for item in batch]
        labels = cls.collate_labels(samples)
        features, feature_ids = cls.flatten_objects(batch=samples, hash_ids=ids)
        return feature_ids, features, labels

    @classmethod
    def collate_labels(cls, batch: List[T_co]) -> Dict[str, Tensor]:
        """Samples -> dict of label tensors (subclasses implement)."""
        raise NotImplementedError(f"{cls.__name__} does not implement collate_labels")

    @classmethod
    def flatten_objects(cls, batch: List[T_co], hash_ids: List[int]) -> Tuple[List[Any], List[int]]:
        """Samples + ids -> ``(features, feature_ids)``, one per encoder input (subclasses)."""
        raise NotImplementedError(f"{cls.__name__} does not implement flatten_objects")

    @classmethod
    def object_ids(cls, hash_ids: List[int]) -> List[int]:
        """Ids of the encoder inputs of samples with ``hash_ids``, in batch order."""
        raise NotImplementedError(f"{cls.__name__} does not implement object_ids")

    @classmethod
    def label_columns(cls, labels: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Collated ``labels`` -> label tensors with one entry per sample."""
        raise NotImplementedError(f"{cls.__name__} does not implement label_columns")

    @classmethod
    def labels_from_columns(cls, columns: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Per-sample label tensors -> the collated labels (the inverse of
        :meth:`label_columns`)."""
        raise NotImplementedError(f"{cls.__name__} does not implement labels_from_columns")

    @classmethod
    def keeps_batch_layout(cls) -> bool:
        """Whether batches of this class follow its base class's layout: no class below a
        Quaterion loader redefines how labels and objects are collated (a cache may then
        build them from stored rows with :meth:`object_ids` and :meth:`labels_from_columns`)."""
        own = ("pre_collate_fn", "collate_labels", "flatten_objects")
        for klass in cls.__mro__:
            if klass.__module__ == __name__:
                return klass is not SimilarityDataLoader
            if any(name in vars(klass) for name in own):
                return False
        return False


_PAIR_HINT = (
    "Yield SimilarityPairSample(obj_a=..., obj_b=..., score=..., subgroup=...) from the "
    "dataset, or use GroupSimilarityDataLoader for SimilarityGroupSample items."
)
_GROUP_HINT = (
    "Yield SimilarityGroupSample(obj=..., group=...) from the dataset (wrap a (record, label) "
    "dataset in SimilarityGroupDataset), or use PairsSimilarityDataLoader for "
    "SimilarityPairSample items."
)


class PairsSimilarityDataLoader(SimilarityDataLoader[SimilarityPairSample]):
    """Loader for :class:`SimilarityPairSample`; use with a ``PairwiseLoss``.

    For ``n`` samples: features ``[obj_a...] + [obj_b...]`` (``2n``), ids
    ``[id...] + [id + 1...]``; labels ``{"pairs": int64 (n, 2) rows [i, i + n],
    "labels": float (n,) scores, "subgroups": float (2n,) subgroup per feature}``.
    """

    @classmethod
    @override
    def collate_labels(cls, batch: List[SimilarityPairSample]) -> Dict[str, Tensor]:
        """Pair samples -> ``{"pairs", "labels", "subgroups"}`` (see class docstring)."""
        check_sample_types(batch, SimilarityPairSample, cls.__name__, _PAIR_HINT)
        scores = as_float_tensor([s.score for s in batch], "score")
        subgroups = as_int_list(
            [s.subgroup for s in batch], "subgroup", exact_in=torch.get_default_dtype()
        )
        subgroups = torch.tensor(subgroups, dtype=torch.get_default_dtype())
        return cls.labels_from_columns({"labels": scores, "subgroups": subgroups})

    @classmethod
    @override
    def labels_from_columns(cls, columns: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """``{"labels", "subgroups"}`` per pair -> ``{"pairs", "labels", "subgroups"}``."""
        first = torch.arange(len(columns["labels"]), dtype=torch.long)
        return {
            "pairs": torch.stack([first, first + len(first)], dim=1),
            "labels": columns["labels"],
            "subgroups": columns["subgroups"].repeat(2),
        }

    @classmethod
    @override
    def label_columns(cls, labels: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """``{"labels", "subgroups"}``, one entry per pair."""
        n = len(labels["labels"])
        return {"labels": labels["labels"], "subgroups": labels["subgroups"][:n]}

    @classmethod
    @override
    def object_ids(cls, hash_ids: List[int]) -> List[int]:
        """``ids + [id + 1 for id in ids]`` (every ``obj_a``, then every ``obj_b``)."""
        return list(hash_ids) + [hash_id + 1 for hash_id in hash_ids]

    @classmethod
    @override
    def flatten_objects(
        cls, batch: List[SimilarityPairSample], hash_ids: List[int]
    ) -> Tuple[List[Any], List[int]]:
        """``(objs_a + objs_b, ids + [id + 1 for id in ids])``."""
        check_sample_types(batch, SimilarityPairSample, cls.__name__, _PAIR_HINT)
        features = [s.obj_a for s in batch] + [s.obj_b for s in batch]
        return features, cls.object_ids(hash_ids)


class GroupSimilarityDataLoader(SimilarityDataLoader[SimilarityGroupSample]):
    """Loader for :class:`SimilarityGroupSample`; use with a ``GroupLoss``.

    For ``n`` samples: features ``[obj...]``, ids unchanged, labels
    ``{"groups": int64 (n,)}``.
    """

    @classmethod
    @override
    def collate_labels(cls, batch: List[SimilarityGroupSample]) -> Dict[str, Tensor]:
        """Group samples -> ``{"groups": int64 (n,)}``."""
        check_sample_types(batch, SimilarityGroupSample, cls.__name__, _GROUP_HINT)
        groups = as_int_list([s.group for s in batch], "group")
        return {"groups": torch.tensor(groups, dtype=torch.long)}

    @classmethod
    @override
    def labels_from_columns(cls, columns: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """``{"groups"}``: already one entry per sample."""
        return {"groups": columns["groups"]}

    @classmethod
    @override
    def label_columns(cls, labels: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """``{"groups"}``."""
        return {"groups": labels["groups"]}

    @classmethod
    @override
    def object_ids(cls, hash_ids: List[int]) -> List[int]:
        """The ids themselves (one object per sample)."""
        return list(hash_ids)

    @classmethod
    @override
    def flatten_objects(
        cls, batch: List[SimilarityGroupSample], hash_ids: List[int]
    ) -> Tuple[List[Any], List[int]]:
        """``([s.obj...], ids)``."""
        check_sample_types(batch, SimilarityGroupSample, cls.__name__, _GROUP_HINT)
        return [s.obj for s in batch], cls.object_ids(hash_ids)
