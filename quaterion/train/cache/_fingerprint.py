"""Fingerprints of a loader's data: labels always, encoder inputs on request.

A persisted cache is reused only while the data it was built from is unchanged. Length
and ids are cheap to compare; labels (group ids, pair scores and subgroups) need one read
of every item; the content of the objects needs that read plus the encoders' collate of
every batch (``CacheConfig(verify_content=True)``).
"""

import hashlib
import json
from typing import Any, Dict, List, Optional

import torch
from pytorch_lightning.utilities.seed import isolate_rng
from torch.utils.data import DataLoader

from quaterion.dataset.label_cache_dataset import labels_only, labels_to_plain
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._fill import fill_workers
from quaterion.train.cache.cache_config import CacheConfig


def labels_sha256(ids: List[Any], samples: List[Any]) -> str:
    """SHA-256 of ids and labels, position by position."""
    digest = hashlib.sha256()
    digest.update(json.dumps(labels_to_plain(ids, samples), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode("utf-8"))
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode("utf-8"))
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(repr(value).encode("utf-8"))


class _Pass:
    """Collate of the fingerprint pass: ids, label-only samples, collated encoder inputs."""

    def __init__(self, pre_collate_fn, collates: Dict[str, Any]):
        self.pre_collate_fn = pre_collate_fn
        self.collates = collates

    def __call__(self, batch):
        ids = [item[0] for item in batch]
        samples = [labels_only(item[1]) for item in batch]
        inputs = {}
        if self.collates:
            _, features, _ = self.pre_collate_fn(batch)
            inputs = {name: collate(features) for name, collate in self.collates.items()}
        return ids, samples, inputs


def read_fingerprints(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    content_collates: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """One ordered pass over ``loader.dataset``.

    Returns ``{"labels_sha256", "content_sha256", "content_batch_size"}`` (the last two
    ``None`` without ``content_collates``).

    ``content_collates`` (encoder name -> the wrapped encoder's collate) adds a hash of
    every collated batch of encoder inputs, batched by ``cache_config.batch_size``.
    """
    collates = content_collates or {}
    workers = fill_workers(loader, cache_config)
    batches = DataLoader(
        loader.dataset,
        batch_size=cache_config.batch_size or 32,
        shuffle=False,
        num_workers=workers,
        collate_fn=_Pass(loader.original_params["collate_fn"], collates),
    )
    ids, samples = [], []
    digests = {name: hashlib.sha256() for name in collates}
    with isolate_rng():  # iterating a DataLoader draws a seed from the global generator
        for batch_ids, batch_samples, inputs in batches:
            ids.extend(batch_ids)
            samples.extend(batch_samples)
            for name, value in inputs.items():
                _feed(digests[name], value)
    return fingerprint(ids, samples, {n: d.hexdigest() for n, d in digests.items()}, batches)


def fingerprint(
    ids: List[Any],
    samples: List[Any],
    content: Optional[Dict[str, str]] = None,
    batches: Optional[DataLoader] = None,
) -> Dict[str, Any]:
    """The manifest record of one split's data."""
    return {
        "labels_sha256": labels_sha256(ids, samples),
        "content_sha256": content or None,
        "content_batch_size": batches.batch_size if content else None,
    }
