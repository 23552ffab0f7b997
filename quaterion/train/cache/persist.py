"""Persisted cache: safe files, layout, manifest of what it was built from, verified load."""

import logging
import os
import shutil
import secrets
import warnings
from typing import Any, Callable, Dict, Optional

import numpy as np
import pytorch_lightning as pl
import torch

from quaterion.train.cache._batches import CachedSplit
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion.train.cache._checksum import file_sha256
from quaterion.train.cache._fingerprint import (  # noqa: F401 (public here: quaterion.mining)
    MANIFEST_VERSION,
    SPLITS,
    encoder_fingerprint,
)
from quaterion import distributed
from quaterion.train.cache._save_dir import CURRENT, FILL, GENERATION_PREFIX, MARK
from quaterion_models.utils.files import read_json, save_torch, write_json
from quaterion_models.utils.atomic import fsync_directory

logger = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"


def encoders_cache_path(dir_path: str) -> str:
    """``<dir>/encoders``."""
    return os.path.join(dir_path, "encoders")


def _mismatch(saved: Dict[str, Any], expected: Dict[str, Any]) -> Optional[str]:
    """Why ``saved`` cannot serve ``expected`` (``None`` if it can)."""
    if saved.get("version") != expected["version"]:
        return f"manifest version {saved.get('version')!r} != {expected['version']}"
    for name, fingerprint in expected["encoders"].items():
        old = saved.get("encoders", {}).get(name)
        if old is None:
            return f"encoder {name!r} is not in the saved cache"
        # every field of either side: a field only the saved one has (the "store" of a
        # storage kind of your own) is a change too
        fields = dict.fromkeys([*fingerprint, *old["fingerprint"]])
        changed = [
            field for field in fields if old["fingerprint"].get(field) != fingerprint.get(field)
        ]
        if changed:
            return f"encoder {name!r} changed or is stored differently ({', '.join(changed)})"
    if saved.get("views", 1) != expected.get("views", 1):
        return f"views changed (saved {saved.get('views', 1)}, now {expected.get('views', 1)})"
    if saved.get("key_extractors") != expected["key_extractors"]:
        return "key extractors changed"
    for split in SPLITS:
        old, new = saved.get("loaders", {}).get(split), expected["loaders"][split]
        if new is None:
            continue
        if old is None:
            return f"the saved cache has no {split} data"
        if old != new:
            return f"{split} data changed (saved {old}, now {new})"
    return None


def _data_changed(split: str, saved: Dict[str, Any], now: Dict[str, Any]) -> Optional[str]:
    old = saved.get("data", {}).get(split) or {}
    if old.get("labels_sha256") != now["labels_sha256"]:
        return f"{split} labels changed (relabelled data)"
    if "sample_sha256" not in old:  # a v3 cache written before content samples
        warnings.warn(
            f"The {split} data of the cache was saved without a content sample (an older "
            "version): replaced objects cannot be detected. Use a new save_dir to rebuild it "
            "with one, or CacheConfig(verify_content=True)",
            stacklevel=5,
        )
    elif old["sample_sha256"] != now["sample_sha256"]:
        return f"{split} content changed (the content sample of its objects differs)"
    content = ("content_sha256", "content_batch_size")
    if now["content_sha256"] is not None and any(old.get(k) != now[k] for k in content):
        return f"{split} content changed (verify_content: collated encoder inputs differ)"
    return None


def file_problem(root: str, relative: str, sha256: Optional[str], verify: bool) -> Optional[str]:
    """Why the file ``relative`` of a saved cache cannot be used (``None`` if it can):
    missing, or (``verify``) not matching the manifest's checksum ``sha256``."""
    path = os.path.join(root, relative)
    if not os.path.isfile(path):
        return f"{relative} is missing"
    if verify and (sha256 is None or file_sha256(path) != sha256):
        return f"{relative} is truncated or corrupt (checksum mismatch)"
    return None


def rows_problem(name: str, enc: CacheEncoder, saved: dict, verify: bool) -> Optional[str]:
    """Why the rows file of a loaded DISK store (or of a storage kind of your own that
    recorded a rows checksum) cannot be used (``None`` if it can)."""
    if saved["fingerprint"].get("file") != "disk" and not saved.get("rows_sha256"):
        return None
    relative = f"encoders/{name}.rows"
    if not saved.get("rows_sha256"):
        return f"{relative} has no checksum (written by an older version)"
    if verify and enc.rows_checksum(recompute=True) != saved["rows_sha256"]:
        return f"{relative} is truncated or corrupt (checksum mismatch)"
    return None


def read_splits(dir_path: str, splits) -> Dict[str, CachedSplit]:
    """The label files of ``splits`` under ``dir_path`` (``weights_only`` reads)."""
    result = {}
    for split in splits:
        path = os.path.join(dir_path, f"{split}_labels")
        state = torch.load(path, map_location="cpu", weights_only=True)
        result[split] = CachedSplit(state["ids"].numpy().view(np.uint64), state["columns"])
    return result


def try_load(
    dir_path: str,
    encoders: Dict[str, CacheEncoder],
    expected: Dict[str, Any],
    fingerprints: Callable[[str], Dict[str, Any]],
    verify: bool = True,
    tidy: bool = False,
) -> Optional[Dict[str, CachedSplit]]:
    """Load a persisted cache if it matches ``expected`` and the data's current
    ``fingerprints(split)`` (its splits; ``None`` otherwise, after a warning with the reason).

    ``verify`` compares the checksum of every file (streamed, chunk by chunk) with the
    manifest's; sizes, dtypes and structure are checked either way. ``tidy`` (this process
    holds the lock of ``dir_path``): once loaded, :func:`drop_stale`."""
    manifest_path = os.path.join(dir_path, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        if os.path.lexists(encoders_cache_path(dir_path)):  # a cache was there
            _warn_rebuild(dir_path, f"{MANIFEST_NAME} is missing")
        return None
    splits = [s for s in SPLITS if expected["loaders"][s]]
    try:
        saved = read_json(manifest_path)
        reason = _mismatch(saved, expected)
        for split in splits:
            reason = reason or _data_changed(split, saved, fingerprints(split))
        if reason is None:
            files = {f"encoders/{n}": saved["encoders"][n]["file_sha256"] for n in encoders}
            files.update({f"{s}_labels": saved["labels"].get(s) for s in splits})
            for relative, sha in files.items():
                reason = reason or file_problem(dir_path, relative, sha, verify)
        if reason is None:
            for name, enc in encoders.items():
                enc.load_cache(os.path.join(encoders_cache_path(dir_path), name))
                reason = reason or rows_problem(name, enc, saved["encoders"][name], verify)
        if reason is None:
            loaded = read_splits(dir_path, splits)
            if tidy:
                drop_stale(dir_path, current_generation(dir_path))
            logger.info("Loaded the encoder cache from %s", dir_path)
            return loaded
    except Exception as err:  # a corrupt file must lead to a rebuild, whatever the error
        reason = f"the saved cache could not be read ({type(err).__name__}: {err})"
    for enc in encoders.values():
        enc.reset_cache()
    _warn_rebuild(dir_path, reason)
    return None


def _warn_rebuild(dir_path: str, reason: str) -> None:
    warnings.warn(
        f"Cache in {dir_path!r} does not match this run and will be rebuilt: {reason}",
        stacklevel=4,
    )


def _link(target: str, link: str) -> None:
    """Make ``link`` a symlink to ``target`` (atomically replacing the link that is there).

    Anything else at ``link`` was not created by the cache and is never replaced."""
    if os.path.lexists(link) and not os.path.islink(link):
        raise FileExistsError(
            f"{link} is not a link the encoder cache created: move it out of save_dir (the "
            "cache manages that name) or use another save_dir"
        )
    tmp = f"{link}.tmp-{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def save(
    dir_path: str,
    encoders: Dict[str, CacheEncoder],
    splits: Dict[str, Optional[CachedSplit]],
    expected: Dict[str, Any],
    fingerprints: Callable[[str], Dict[str, Any]],
) -> str:
    """Write a new generation of the cache and switch to it in one atomic step.

    Every file goes into a fresh ``<dir>/.gen-*`` directory; the names of the layout
    (``encoders``, ``<split>_labels``, ``manifest.json``) are symlinks through
    ``<dir>/current``, which is replaced last. A crash at any point leaves the previous
    cache whole and loadable. Returns the generation's name (what ``current`` points to).
    """
    os.makedirs(dir_path, exist_ok=True)
    generation = os.path.join(dir_path, GENERATION_PREFIX + secrets.token_hex(8))  # never taken
    os.mkdir(generation)  # mode 0o777 less the umask: a group-writable umask shares the cache
    try:
        manifest = {**expected, "encoders": {}, "labels": {}, "data": {}}
        for name, enc in encoders.items():
            path = os.path.join(generation, "encoders", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            enc.save_cache(path)
            manifest["encoders"][name] = {
                "fingerprint": expected["encoders"][name],
                "file_sha256": file_sha256(path),
                "rows_sha256": enc.rows_checksum(),
                "rows": len(enc.offset_map) if hasattr(enc, "offset_map") else None,
                "embedding_size": enc.embedding_size,
            }
        for split, cached in splits.items():
            path = os.path.join(generation, f"{split}_labels")
            manifest["data"][split] = fingerprints(split)
            ids = cached.ids if cached is not None else np.zeros(0, dtype=np.uint64)
            columns = cached.columns if cached is not None else {}
            save_torch({"ids": torch.from_numpy(ids.view(np.int64)), "columns": columns}, path)
            manifest["labels"][split] = file_sha256(path)
        write_json(os.path.join(generation, MANIFEST_NAME), manifest)
        fsync_directory(generation)
    except BaseException:  # e.g. a full disk: free what was written, keep the cache of before
        shutil.rmtree(generation, ignore_errors=True)
        raise
    for name in ["encoders", MANIFEST_NAME] + [f"{split}_labels" for split in SPLITS]:
        _link(os.path.join(CURRENT, name), os.path.join(dir_path, name))
    _link(os.path.basename(generation), os.path.join(dir_path, CURRENT))
    fsync_directory(dir_path)
    drop_stale(dir_path, os.path.basename(generation))
    return os.path.basename(generation)


def drop_stale(dir_path: str, keep: Optional[str]) -> None:
    """Remove the generations other than ``keep`` and the DISK fill files that a killed or
    failed run left (a finished fill has moved its rows into a generation); a cache nested
    under such a name stays. Called only while no other process may write ``dir_path``."""
    for entry in os.listdir(dir_path):
        path = os.path.join(dir_path, entry)
        stale = entry.startswith(GENERATION_PREFIX) and entry != keep or entry == FILL
        if stale and not os.path.isfile(os.path.join(path, MARK)):
            shutil.rmtree(path, ignore_errors=True)


def current_generation(dir_path: str) -> Optional[str]:
    """Name of the generation ``<dir>/current`` points to (``None`` if there is none)."""
    link = os.path.join(dir_path, CURRENT)
    return os.readlink(link) if os.path.islink(link) else None


def save_per_filesystem(trainer: pl.Trainer, save_dir: str, write: Callable[[], str]) -> None:
    """Write the cache once per filesystem that holds ``save_dir``.

    Global rank 0 writes first. On a filesystem shared by every node the others then see that
    generation and write nothing; on node-local disks the first process of every other node
    does not, and writes its own copy (every rank holds the complete store after the fill).
    """
    with distributed.fail_together("Writing the encoder cache"):  # e.g. a full disk
        generation = write() if trainer.global_rank == 0 else None
    generation = distributed.gather_objects(generation)[0]
    own_copy = trainer.local_rank == 0 and trainer.global_rank != 0
    with distributed.fail_together("Writing the encoder cache"):  # waits for every copy
        if own_copy and current_generation(save_dir) != generation:
            write()
