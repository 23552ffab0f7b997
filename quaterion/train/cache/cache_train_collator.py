"""Collator that swaps a cached encoder's objects for cache keys."""

from collections import defaultdict
from typing import Any, Callable, Dict, Hashable, List, Sequence

import torch
from typing_extensions import override

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.dataset.train_collator import TrainCollator
from quaterion.train.cache.cache_config import KeyExtractorType
from quaterion.train.cache.cache_encoder import CacheMode
from quaterion_models.encoders import Encoder
from quaterion_models.types import CollateFnType, MetaExtractorFnType


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
            unseen_keys, unseen_features = [], []
            for key, obj in zip(keys, features):
                if key not in seen:
                    seen.add(key)
                    unseen_keys.append(key)
                    unseen_features.append(obj)
            return unseen_keys, unseen_features
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
