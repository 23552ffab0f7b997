"""The identity of a loader's data, read and hashed: labels and a content sample always,
encoder inputs on request.

A persisted cache is reused only while the data it was built from is unchanged. Length
and ids are cheap to compare; labels (group ids, pair scores and subgroups) need one read
of every item (the data pass, batched like the fill); a sample of :data:`SAMPLE_SIZE`
objects, chosen by a seeded rule (:func:`sample_items`), catches data replaced wholesale;
the content of every object needs that read plus the encoders' collate of every batch
(``CacheConfig(verify_content=True)``).
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from pytorch_lightning.utilities.seed import isolate_rng
from torch.utils.data import DataLoader, Dataset

from quaterion.dataset.label_cache_dataset import labels_only
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._batches import CachedSplit
from quaterion.train.cache._views import ViewDataset, seeded_int
from quaterion.train.cache._callable_fingerprint import ADDRESS, callable_fingerprint
from quaterion.train.cache.cache_config import CacheConfig, CacheType
from quaterion.train.cache.cache_encoder import CacheEncoder

SAMPLE_SIZE = 32
SAMPLE_SEED = "quaterion-content-sample"
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


def fill_loader(
    loader: SimilarityDataLoader,
    cache_config: CacheConfig,
    collate_fn: Optional[Callable] = None,
    dataset: Optional[Dataset] = None,
) -> DataLoader:
    """Plain, unshuffled ``DataLoader`` with the fill settings: ``CacheConfig.batch_size``,
    ``CacheConfig.num_workers`` (``None``, or an iterable dataset, whose ids depend on the
    worker: the loader's) and the loader's other arguments.

    It reads ``dataset`` (default ``loader.dataset``) through ``collate_fn`` (default the
    loader's own ``collate_fn``).
    """
    params = {k: v for k, v in loader.original_params.items() if k not in _DROP_PARAMS}
    workers = cache_config.num_workers
    if workers is None or isinstance(loader.dataset, torch.utils.data.IterableDataset):
        workers = loader.num_workers
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


def sample_positions(length: int, size: int = SAMPLE_SIZE) -> List[int]:
    """``size`` positions out of ``length`` (all if fewer): one in each of ``size`` equal
    strides, at an offset drawn from a seeded hash of the stride's number (the same on every
    machine and run)."""
    if length <= size:
        return list(range(length))
    bounds = [k * length // size for k in range(size + 1)]  # stride k: bounds[k] to bounds[k+1]
    offsets = [seeded_int(SAMPLE_SEED, k, nbytes=8) for k in range(size)]
    return [bounds[k] + offsets[k] % (bounds[k + 1] - bounds[k]) for k in range(size)]


def sample_items(dataset: Any) -> Iterator[Any]:
    """The content sample of ``dataset``: its items at :func:`sample_positions`, each under
    the seeded random state of view 0 (a random transform samples the same content in every
    run); the first :data:`SAMPLE_SIZE` items of an iterable dataset."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return itertools.islice(iter(dataset), SAMPLE_SIZE)
    seeded = ViewDataset(dataset, 0)
    return (seeded[position] for position in sample_positions(len(dataset)))


def _pass_batch(
    pre_collate_fn: Callable, collates: Dict[str, Any], layout: Optional[type], batch: List[Any]
) -> tuple:
    """Collate of the data pass (:func:`_data_pass`): a batch as ids, labels
    (``layout.label_columns`` for a loader served from the store, else the label-only
    samples) and every encoder's collate of the inputs (``collates``: name -> collate)."""
    ids = np.array([item[0] for item in batch], dtype=np.uint64)
    if layout is not None:
        _, features, labels = pre_collate_fn(batch)
        labels = layout.label_columns(labels)
    else:  # other layouts: the label-only samples themselves
        labels = [repr(labels_only(item[1])) for item in batch]
        features = pre_collate_fn(batch)[1] if collates else None
    inputs = {name: collate(features) for name, collate in collates.items()}
    return ids, labels, inputs


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
    elif not ADDRESS.search(repr(value)):
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
    """Hex SHA-256 of the items of ``dataset`` in its content sample (:func:`sample_items`):
    what each of them holds, not only its length and labels.

    A map-style dataset's sample is read twice: when the two reads differ (a random
    transform drawing from a generator of its own that nothing seeds), a warning names the
    cause at once, since a persisted cache of that data can never be reused."""
    first = _sample_digest(dataset)
    if not isinstance(dataset, torch.utils.data.IterableDataset):
        if _sample_digest(dataset) != first:
            warnings.warn(
                f"The content sample of {type(dataset).__name__} differs between two reads "
                "under the same seeds: a random transform draws from a generator of its own "
                "that nothing seeds, so a persisted encoder cache of this data is rebuilt on "
                "every run (content changed). Seed that generator, or draw from torch's, "
                "NumPy's or Python's global generators",
                stacklevel=2,
            )
    return first


def _sample_digest(dataset: Any) -> str:
    digest = hashlib.sha256()
    with isolate_rng():  # a random transform must not shift the run's random numbers
        for item in sample_items(dataset):
            _feed_content(digest, item)
    return digest.hexdigest()


def sha256(value: Any) -> str:
    """SHA-256 of tensors, arrays and plain containers of them (dtype and shape included)."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _data_pass(
    loader: SimilarityDataLoader, layout: Optional[type], config: CacheConfig, collates: dict
) -> tuple:
    """One ordered read of ``loader.dataset`` in fill batches (:func:`fill_loader` under
    ``config``): ids, labels (label columns for a loader served from the store, else the
    label-only samples), the hash of each encoder's collated inputs (``collates``: name ->
    collate) and the batch size."""
    collate = functools.partial(_pass_batch, loader.original_params["collate_fn"], collates, layout)
    batches = fill_loader(loader, config, collate)
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


def read_split(loader: SimilarityDataLoader, layout: Optional[type]) -> Optional[CachedSplit]:
    """The ids and label columns of every position of ``loader`` (one read of its data);
    ``None`` for a loader whose batches cannot come from the store (``layout`` is ``None``)."""
    if layout is None:
        return None
    ids, columns, _, _ = _data_pass(loader, layout, CacheConfig(), {})
    return CachedSplit(ids, columns if isinstance(columns, dict) else {})


SPLITS = ("train", "val")
BUILT_IN_KINDS = frozenset(kind.value for kind in CacheType)
MANIFEST_VERSION = 3


def encoder_fingerprint(cached: CacheEncoder) -> Dict[str, str]:
    """Class path, config, structure (``repr``), the code of ``forward`` (see
    :func:`callable_fingerprint`) and a SHA-256 of the state dict (and the non-persistent
    buffers) of the wrapped encoder, and how the rows are stored (file kind, dtype;
    ``store``: the ``STORES`` name of a storage kind of your own, absent for the built-in
    kinds)."""
    encoder = cached.wrapped_encoder
    config = getattr(encoder, "get_config_dict", None)
    cls = type(encoder)
    state = dict(encoder.state_dict())  # + buffers left out of it (e.g. normalisation constants)
    state.update((name, buf) for name, buf in encoder.named_buffers() if name not in state)
    record = {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": json.dumps(config(), sort_keys=True, default=str) if callable(config) else "",
        "structure": repr(encoder),
        "code": callable_fingerprint(cls.forward),  # an edited forward encodes differently
        "state_sha256": sha256(state),
        "file": "disk" if getattr(cached, "cache_type", None) == "disk" else "memory",
        "dtype": str(getattr(cached, "dtype", None)),
    }
    kind = getattr(cached, "cache_type", None)
    if kind is not None and str(kind) not in BUILT_IN_KINDS:  # a storage kind of your own
        record["store"] = str(kind)
    return record


def expected_manifest(
    encoders: Dict[str, CacheEncoder],
    loaders: Dict[str, SimilarityDataLoader],
    key_extractors: Dict[str, Any],
    views: int = 1,
) -> Dict[str, Any]:
    """What a cache built now would record (compared with a saved manifest): the fingerprint
    of each encoder and key extractor, the class and length of each split's loader (its ids
    and labels are compared through the split's data fingerprint); ``views`` is recorded only
    above 1 (a one-view manifest is unchanged)."""
    records = {}
    for split, loader in loaders.items():
        try:
            length = len(loader.dataset)
        except (TypeError, NotImplementedError):
            length = None
        records[split] = {"loader": type(loader).__name__, "length": length}
    manifest = {
        "version": MANIFEST_VERSION,
        "encoders": {name: encoder_fingerprint(enc) for name, enc in encoders.items()},
        "key_extractors": {name: callable_fingerprint(fn) for name, fn in key_extractors.items()},
        "loaders": {split: records.get(split) for split in SPLITS},
    }
    return {**manifest, "views": views} if views > 1 else manifest


def split_fingerprints(
    loaders: Dict[str, SimilarityDataLoader],
    layouts: Dict[str, Optional[type]],
    config: CacheConfig,
    content: Optional[Dict[str, Any]],
    splits: dict,
) -> Callable[[str], Dict[str, Any]]:
    """``split -> manifest record`` of its data (``labels_sha256``, ``sample_sha256``,
    ``content_sha256``, ``content_batch_size``), each part read and hashed once, on first ask,
    and remembered: the content sample; ids and labels from its entry in ``splits`` when
    there is one and no ``content`` hash is asked for (encoder name -> the wrapped encoder's
    collate), else from the data pass (:func:`_data_pass`; ``layouts`` of the set-up,
    ``config``'s batches), which then also hashes every encoder's collated inputs."""
    collates = content or {}
    sample = functools.cache(lambda split: content_sample(loaders[split].dataset))

    @functools.cache
    def data_pass(split: str) -> tuple:
        ids, labels, hashes, size = _data_pass(loaders[split], layouts[split], config, collates)
        return sha256([ids, labels]), hashes or None, size if hashes else None

    def record(split: str) -> dict:
        cached = None if content else splits.get(split)
        if cached is not None:
            labels, hashes, size = sha256([cached.ids, cached.columns]), None, None
        else:
            labels, hashes, size = data_pass(split)
        return {
            "labels_sha256": labels,
            "sample_sha256": sample(split),
            "content_sha256": hashes,  # verify_content: each encoder's collated inputs
            "content_batch_size": size,
        }

    return record
