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
import re
import warnings
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import numpy as np
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from torch.utils.data import DataLoader

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._batches import CachedSplit
from quaterion.train.cache._views import SampleItems, batches_from_store, data_pass
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


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


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
    """Hex SHA-256 of the items of ``dataset`` in its content sample (``_views.SampleItems``):
    what each of them holds, not only its length and labels."""
    return _sample_sha256(SampleItems(dataset))


def _sample_sha256(items: Iterable[Any]) -> str:
    digest = hashlib.sha256()
    with isolate_rng():  # a random transform must not shift the run's random numbers
        for item in items:
            _feed_content(digest, item)
    return digest.hexdigest()


def sha256(value: Any) -> str:
    """SHA-256 of tensors, arrays and plain containers of them (dtype and shape included)."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _hash_pass(batches: DataLoader, collates: Dict[str, Any]) -> tuple:
    """Ids, labels (label columns for a loader served from the store, else the label-only
    samples) and the hash of each encoder's collated inputs, from the batches of
    :func:`data_pass`."""
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
    return ids, labels, content


def read_split(loader: SimilarityDataLoader) -> Optional[CachedSplit]:
    """The ids and label columns of every position of ``loader`` (one read of its data);
    ``None`` for a loader whose batches cannot come from the store."""
    if not batches_from_store(loader):
        return None
    ids, columns, _ = _hash_pass(data_pass(loader, CacheConfig(), {}, type(loader)), {})
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
    reads: Dict[str, Tuple[Iterable[Any], DataLoader]],
    content: Optional[Dict[str, Any]],
    splits: dict,
) -> Callable:
    """``split -> manifest record`` of its data (see :func:`fingerprint`) from its
    ``reads`` (``_views.data_reads``), each hashed once and remembered: the content sample;
    ids and labels from its entry in ``splits`` when there is one and no ``content`` hash is
    asked for (encoder name -> the wrapped encoder's collate), else from the data pass, which
    then also hashes every encoder's collated inputs."""
    samples: Dict[str, str] = {}
    passes: Dict[str, tuple] = {}

    def record(split: str) -> dict:
        sample, batches = reads[split]
        if split not in samples:
            samples[split] = _sample_sha256(sample)
        cached = None if content else splits.get(split)
        if cached is not None:
            return fingerprint(sha256([cached.ids, cached.columns]), sample=samples[split])
        if split not in passes:
            ids, labels, hashes = _hash_pass(batches, content or {})
            passes[split] = (sha256([ids, labels]), hashes, batches.batch_size)
        return fingerprint(*passes[split], samples[split])

    return record
