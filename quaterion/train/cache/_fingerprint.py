"""Fingerprints of a loader's data: labels and a content sample always, encoder inputs on
request.

A persisted cache is reused only while the data it was built from is unchanged. Length
and ids are cheap to compare; labels (group ids, pair scores and subgroups) need one read
of every item; a sample of :data:`SAMPLE_SIZE` objects, chosen by a seeded rule, catches
data replaced wholesale; the content of every object needs that read plus the encoders'
collate of every batch (``CacheConfig(verify_content=True)``).
"""

import dataclasses
import hashlib
import itertools
import re
import warnings
from functools import cache
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from pytorch_lightning.utilities.seed import isolate_rng

from quaterion.dataset.label_cache_dataset import labels_only
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._batches import CachedSplit, batches_from_store
from quaterion.train.cache._views import ViewDataset, fill_loader
from quaterion.train.cache.cache_config import CacheConfig


def _feed_items(digest, value: Any, feed) -> bool:
    """Hash a dict (by sorted key) or a list or tuple item by item with ``feed``; ``False``
    for any other value."""
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode("utf-8"))
            feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            feed(digest, item)
        digest.update(b"]")
    else:
        return False
    return True


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode("utf-8"))
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        _feed(digest, torch.from_numpy(value.astype(np.int64, copy=False)))
    elif not _feed_items(digest, value, _feed):
        digest.update(repr(value).encode("utf-8"))


SAMPLE_SIZE = 32
SAMPLE_SEED = "quaterion-content-sample"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


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


def _feed_content(digest, value: Any) -> None:  # noqa: C901 (one branch per kind of object)
    """Hash one object by its content (tensors and arrays by dtype, shape and bytes)."""
    if isinstance(value, torch.Tensor):
        _feed(digest, value)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        data = np.ascontiguousarray(value)
        digest.update(f"A{data.dtype.str}{data.shape}".encode("utf-8"))
        digest.update(data.tobytes())
    elif isinstance(value, (str, bytes, int, float, bool, type(None), np.generic)):
        digest.update(f"{type(value).__name__}:{value!r}".encode("utf-8"))
    elif isinstance(value, (dict, list, tuple, np.ndarray)):  # an object array: item by item
        _feed_items(digest, list(value) if isinstance(value, np.ndarray) else value, _feed_content)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__qualname__.encode("utf-8"))
        for item in dataclasses.fields(value):
            _feed_content(digest, getattr(value, item.name))
    elif all(hasattr(value, name) for name in ("tobytes", "mode", "size")):  # a PIL image
        digest.update(f"I{value.mode}{tuple(value.size)}".encode("utf-8"))
        digest.update(value.tobytes())
    elif not _ADDRESS.search(repr(value)):
        digest.update(f"{type(value).__qualname__}:{value!r}".encode("utf-8"))
    else:
        digest.update(type(value).__qualname__.encode("utf-8"))
        warnings.warn(
            f"The cache's content sample cannot hash objects of type "
            f"{type(value).__qualname__} (no stable repr, not a tensor, array, string, dict, "
            "dataclass or PIL image): only their type is compared, so replaced objects of "
            "this type are not detected. Use CacheConfig(verify_content=True), or "
            "key_extractors derived from the content",
            stacklevel=2,
        )


def content_sample(dataset: Any) -> str:
    """Hex SHA-256 of the items of ``dataset`` at :func:`sample_positions` (the first
    :data:`SAMPLE_SIZE` items of an iterable dataset): what each of them holds, not only its
    length and labels. Costs :data:`SAMPLE_SIZE` reads, each under the seeded random state of
    view 0 (a random transform samples the same content in every run)."""
    digest = hashlib.sha256()
    if isinstance(dataset, torch.utils.data.IterableDataset):
        items = itertools.islice(iter(dataset), SAMPLE_SIZE)
    else:
        positions = sample_positions(len(dataset))
        seeded = ViewDataset(dataset, 0)
        items = (seeded[position] for position in positions)
    with isolate_rng():  # a random transform must not shift the run's random numbers
        for item in items:
            _feed_content(digest, item)
    return digest.hexdigest()


def sha256(value: Any) -> str:
    """SHA-256 of tensors, arrays and plain containers of them (dtype and shape included)."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


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


def _read(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    collates: Dict[str, Any],
    layout: Optional[type],
) -> tuple:
    """One ordered pass over ``loader.dataset``: ids, labels (label columns for a loader
    served from the store, else the label-only samples), the hash of each encoder's collated
    inputs, and the pass's batch size."""
    pass_collate = _Pass(loader.original_params["collate_fn"], collates, layout)
    batches = fill_loader(loader, cache_config, pass_collate)
    ids, labels = [], []
    digests = {name: hashlib.sha256() for name in collates}
    with isolate_rng():  # iterating a DataLoader draws a seed from the global generator
        for batch_ids, batch_labels, inputs in batches:
            ids.append(batch_ids)
            labels.append(batch_labels)
            for name, value in inputs.items():
                _feed(digests[name], value)
    content = {name: digest.hexdigest() for name, digest in digests.items()}
    if labels and isinstance(labels[0], dict):  # the label columns a CachedSplit holds
        labels = {key: torch.cat([batch[key] for batch in labels]) for key in labels[0]}
    else:
        labels = [record for batch in labels for record in batch]
    ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.uint64)
    return ids, labels, content, batches.batch_size


def read_fingerprints(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    content_collates: Optional[Dict[str, Any]] = None,
    layout: Optional[type] = None,
) -> Dict[str, Any]:
    """One ordered pass over ``loader.dataset``; see :func:`fingerprint` for the result.
    ``content_collates`` (encoder name -> the wrapped encoder's collate) adds a hash of
    every collated batch of encoder inputs, batched by ``cache_config.batch_size``;
    ``layout``: the loader's class when its batches can come from the store.
    """
    collates = content_collates or {}
    ids, labels, content, batch_size = _read(loader, cache_config, collates, layout)
    return fingerprint(sha256([ids, labels]), content, batch_size, content_sample(loader.dataset))


def read_split(loader: SimilarityDataLoader) -> Optional[CachedSplit]:
    """The ids and label columns of every position of ``loader`` (one read of its data);
    ``None`` for a loader whose batches cannot come from the store."""
    if not batches_from_store(loader):
        return None
    ids, columns, _, _ = _read(loader, CacheConfig(), {}, type(loader))
    return CachedSplit(ids, columns if isinstance(columns, dict) else {})


def fingerprint(
    labels: str,
    content: Optional[Dict[str, str]] = None,
    batch_size: Optional[int] = None,
    sample: Optional[str] = None,
) -> Dict[str, Any]:
    """The manifest record of one split's data."""
    return {
        "labels_sha256": labels,
        "sample_sha256": sample,
        "content_sha256": content or None,
        "content_batch_size": batch_size if content else None,
    }


def split_fingerprints(
    loaders: Dict[str, SimilarityDataLoader],
    config: CacheConfig,
    content,
    splits: dict,
    layouts: Dict[str, Optional[type]],
) -> Callable:
    """``split -> manifest record`` of its data: from its entry in ``splits`` when there is
    one and no ``content`` hash is asked for, else from one read of the loader (remembered)."""

    @cache
    def read(split: str) -> dict:
        return read_fingerprints(loaders[split], config, content, layouts[split])

    def of(split: str) -> dict:
        cached = None if content else splits.get(split)
        if cached is None:
            return read(split)
        sample = content_sample(loaders[split].dataset)
        return fingerprint(sha256([cached.ids, cached.columns]), sample=sample)

    return of
