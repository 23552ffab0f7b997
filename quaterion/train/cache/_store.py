"""Persisted cache: layout, manifest of what it was built from, verified load."""

import logging
import os
import warnings
from typing import Any, Dict, Optional

from quaterion.dataset.indexing_dataset import hashit
from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._persistence import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    encoder_fingerprint,
    file_sha256,
    ids_fingerprint,
    labels_from_plain,
    labels_to_plain,
    load_json,
    load_tensor_file,
    save_json,
    save_tensor_file,
)
from quaterion.train.cache.cache_encoder import CacheEncoder

logger = logging.getLogger(__name__)
SPLITS = ("train", "val")


def encoders_cache_path(dir_path: Optional[str]) -> Optional[str]:
    """``<dir>/encoders``, or ``None`` when ``dir_path`` is falsy."""
    return os.path.join(dir_path, "encoders") if dir_path else None


def labels_path(dir_path: str, split: str) -> str:
    """``<dir>/train_labels`` or ``<dir>/val_labels``."""
    return os.path.join(dir_path, f"{split}_labels")


def _label_layer(loader: SimilarityDataLoader):
    return loader.dataset


def loader_record(loader: Optional[SimilarityDataLoader]) -> Optional[Dict[str, Any]]:
    """Length, salt and a hash of the item ids of ``loader`` (``None`` without a loader)."""
    if loader is None:
        return None
    indexing = loader.dataset.dataset
    salt = getattr(indexing, "salt", None)
    try:
        length = len(loader.dataset)
    except (TypeError, NotImplementedError):
        length = None
    ids = [hashit(i, salt) for i in range(length)] if length is not None else []
    return {
        "loader": type(loader).__name__,
        "length": length,
        "salt": str(salt),
        "ids_sha256": ids_fingerprint(ids),
    }


def expected_manifest(
    encoders: Dict[str, CacheEncoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    key_extractors: Dict[str, Any],
    full_cache: bool,
) -> Dict[str, Any]:
    """What a cache built now would record (compared with a saved manifest)."""
    return {
        "version": MANIFEST_VERSION,
        "encoders": {
            name: encoder_fingerprint(enc.wrapped_encoder) for name, enc in encoders.items()
        },
        "key_extractors": {
            name: f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
            for name, fn in key_extractors.items()
        },
        "loaders": {"train": loader_record(train_dataloader), "val": loader_record(val_dataloader)},
        "full_cache": full_cache,
    }


def _mismatch(saved: Dict[str, Any], expected: Dict[str, Any]) -> Optional[str]:
    """Why ``saved`` cannot serve ``expected`` (``None`` if it can)."""
    if saved.get("version") != expected["version"]:
        return f"manifest version {saved.get('version')!r} != {expected['version']}"
    for name, fingerprint in expected["encoders"].items():
        old = saved.get("encoders", {}).get(name)
        if old is None:
            return f"encoder {name!r} is not in the saved cache"
        for field in ("class", "config", "structure", "state_sha256"):
            if old.get("fingerprint", {}).get(field) != fingerprint[field]:
                return f"encoder {name!r} changed ({field} differs)"
    if saved.get("key_extractors") != expected["key_extractors"]:
        return "key extractors changed"
    for split in SPLITS:
        old, new = saved.get("loaders", {}).get(split), expected["loaders"][split]
        if new is None:
            continue
        if old is None:
            return f"the saved cache has no {split} data"
        for field in ("loader", "length", "salt", "ids_sha256"):
            if old.get(field) != new[field]:
                return (
                    f"{split} data changed ({field}: saved {old.get(field)!r}, now {new[field]!r})"
                )
    if expected["full_cache"] and not saved.get("full_cache"):
        return "the saved cache holds no labels (it was built without full-cache mode)"
    return None


def _check_file(dir_path: str, relative: str, sha256: Optional[str]) -> Optional[str]:
    path = os.path.join(dir_path, relative)
    if not os.path.isfile(path):
        return f"{relative} is missing"
    if sha256 is None or file_sha256(path) != sha256:
        return f"{relative} is truncated or corrupt (checksum mismatch)"
    return None


def try_load(
    dir_path: str,
    encoders: Dict[str, CacheEncoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    expected: Dict[str, Any],
) -> bool:
    """Load a persisted cache if it matches ``expected``; warn with the reason otherwise."""
    manifest_path = os.path.join(dir_path, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        if os.path.isdir(encoders_cache_path(dir_path)):
            _warn_rebuild(dir_path, f"{MANIFEST_NAME} is missing")
        return False
    try:
        saved = load_json(manifest_path)
        reason = _mismatch(saved, expected)
        if reason is None:
            files = {f"encoders/{n}": saved["encoders"][n]["file_sha256"] for n in encoders}
            files.update(
                {f"{s}_labels": saved["labels"].get(s) for s in SPLITS if expected["loaders"][s]}
            )
            for relative, sha in files.items():
                reason = reason or _check_file(dir_path, relative, sha)
        if reason is None:
            for name, enc in encoders.items():
                enc.load_cache(os.path.join(encoders_cache_path(dir_path), name))
            for split, loader in zip(SPLITS, (train_dataloader, val_dataloader)):
                if loader is not None:
                    state = load_tensor_file(labels_path(dir_path, split))
                    _label_layer(loader)._cache = labels_from_plain(state)
            logger.info("Loaded the encoder cache from %s", dir_path)
            return True
    except Exception as err:  # a corrupt file must lead to a rebuild, whatever the error
        reason = f"the saved cache could not be read ({type(err).__name__}: {err})"
    for enc in encoders.values():
        enc.reset_cache()
    _warn_rebuild(dir_path, reason)
    return False


def _warn_rebuild(dir_path: str, reason: str) -> None:
    warnings.warn(
        f"Cache in {dir_path!r} does not match this run and will be rebuilt: {reason}",
        stacklevel=4,
    )


def save(
    dir_path: Optional[str],
    encoders: Dict[str, CacheEncoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    expected: Dict[str, Any],
) -> None:
    """Write encoder caches, label caches and (last) the manifest, each atomically."""
    if not dir_path:
        return
    manifest = dict(expected)
    manifest["encoders"] = {}
    for name, enc in encoders.items():
        path = os.path.join(encoders_cache_path(dir_path), name)
        enc.save_cache(path)
        manifest["encoders"][name] = {
            "fingerprint": expected["encoders"][name],
            "file_sha256": file_sha256(path),
            "rows": int(enc.cache.shape[0]) if getattr(enc, "cache", None) is not None else None,
            "embedding_size": enc.embedding_size,
        }
    manifest["labels"] = {}
    for split, loader in zip(SPLITS, (train_dataloader, val_dataloader)):
        if loader is None:
            continue
        path = labels_path(dir_path, split)
        plain = labels_to_plain(_label_layer(loader)._cache)
        if plain is None:
            logger.info("Label cache of custom sample types is not persisted")
            manifest["full_cache"] = False
            plain = labels_to_plain({})
        save_tensor_file(plain, path)
        manifest["labels"][split] = file_sha256(path)
    save_json(manifest, os.path.join(dir_path, MANIFEST_NAME))
