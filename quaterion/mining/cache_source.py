"""Servable vectors from a persisted encoder cache: mining without encoding the corpus again.

A cache saved with ``CacheConfig(save_dir=...)`` holds the frozen encoders' outputs for every
object of its splits. :func:`read_cached_embeddings` opens it read-only, checks it the way a
training run's load does (manifest version, the encoders' fingerprints against the servable's
encoders, every file's checksum), and runs only the servable's head over the stored rows, in
dataset order. The encoders are never called.
"""

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from quaterion.dataset.similarity_data_loader import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
)
from quaterion.train.cache.persist import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    current_generation,
    encoder_fingerprint,
    file_problem,
    read_splits,
    rows_problem,
)
from quaterion.train.cache.cache_config import CacheConfig, CacheType
from quaterion.train.cache.store import check_store_class
from quaterion.train.cache.stores import STORES
from quaterion_models.model import SimilarityModel
from quaterion_models.utils.files import read_json


class CacheMismatchError(ValueError):
    """A persisted cache that cannot serve this servable (other encoders, damaged files, no
    dataset order recorded)."""


@dataclass
class CachedEmbeddings:
    """Servable vectors of one split of a persisted cache, in dataset order.

    Attributes:
        vectors: float ``(n, d)`` for group data (one object per sample); ``(2n, d)`` for
            pair data, every ``obj_a`` then every ``obj_b``.
        columns: the split's labels per sample: ``{"groups"}`` (group data) or
            ``{"labels", "subgroups"}`` (pair data).
    """

    vectors: Tensor
    columns: Dict[str, Tensor]

    @property
    def is_pairs(self) -> bool:
        """Whether the split holds pairs (``obj_a``/``obj_b``) rather than group samples."""
        return "groups" not in self.columns

    @property
    def groups(self) -> Tensor:
        """int64 ``(n,)`` group of every sample (group data)."""
        if self.is_pairs:
            raise ValueError("this cache holds pairs: use obj_a / obj_b and the pair labels")
        return self.columns["groups"]

    @property
    def obj_a(self) -> Tensor:
        """``(n, d)`` vectors of every pair's ``obj_a`` (pair data)."""
        return self._half(0)

    @property
    def obj_b(self) -> Tensor:
        """``(n, d)`` vectors of every pair's ``obj_b`` (pair data)."""
        return self._half(1)

    def _half(self, part: int) -> Tensor:
        if not self.is_pairs:
            raise ValueError("this cache holds group samples: use vectors and groups")
        n = self.vectors.shape[0] // 2
        return self.vectors[part * n : (part + 1) * n]


def read_cached_embeddings(
    save_dir: "str | os.PathLike[str]",
    model: Any,
    split: str = "train",
    *,
    verify: bool = True,
    batch_size: int = 4096,
) -> CachedEmbeddings:
    """The servable vectors of ``split`` of the cache persisted in ``save_dir``.

    Args:
        save_dir: the ``CacheConfig.save_dir`` a fit wrote its cache to.
        model: the servable (``SimilarityModel``, a ``TrainableModel`` whose ``.model`` is
            used, or a saved servable directory). Its encoders must be the cached ones
            (same class, config and weights): only its head runs, over the stored rows.
        split: ``"train"`` or ``"val"``.
        verify: compare every file's SHA-256 with the manifest (streamed); sizes, dtypes and
            structure are checked either way.
        batch_size: rows run through the head at once.

    Raises:
        FileNotFoundError: ``save_dir`` holds no persisted cache.
        CacheMismatchError: the cache was built by other encoders, a file is damaged, or it
            recorded no dataset order for ``split`` (custom ``key_extractors``).

    Example::

        cached = read_cached_embeddings("cache_dir", trainable_model)
        mined = mine_hard_negatives(cached.vectors, groups=cached.groups)
    """
    servable = _servable(model)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    root = _generation(os.fspath(save_dir))
    manifest = _manifest(root)
    stores = {
        name: _open_store(root, name, encoder, manifest, verify)
        for name, encoder in servable.encoders.items()
    }
    extra = sorted(set(manifest.get("encoders", {})) - set(stores))
    if extra:
        raise CacheMismatchError(
            f"the cache in {root} also holds encoders {extra} that the servable lacks: read "
            "it with the servable of the model that was fitted with this cache"
        )
    cached = _split(root, manifest, split, verify)
    layout = PairsSimilarityDataLoader if "labels" in cached.columns else GroupSimilarityDataLoader
    keys = layout.object_ids(cached.ids.tolist())
    rows = {name: store.rows_for_keys(keys) for name, store in stores.items()}
    reader = SimilarityModel(encoders=stores, head=servable.head)
    reader.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(keys), batch_size):
            data = {name: part[start : start + batch_size] for name, part in rows.items()}
            chunk = {name: stores[name].meta_cache for name in stores}
            meta = _meta(chunk, keys[start : start + batch_size])
            parts.append(reader({"data": data, "meta": meta}).float())
    vectors = torch.cat(parts) if parts else torch.empty(0, servable.head.output_size)
    return CachedEmbeddings(vectors, dict(cached.columns))


def _servable(model: Any) -> SimilarityModel:
    if isinstance(model, (str, os.PathLike)):
        return SimilarityModel.load(os.fspath(model))
    inner = getattr(model, "model", None)
    if not isinstance(model, SimilarityModel) and isinstance(inner, SimilarityModel):
        model = inner
    if not isinstance(model, SimilarityModel):
        raise TypeError(
            f"model must be a SimilarityModel, a TrainableModel or a saved servable directory, "
            f"got {type(model).__name__}"
        )
    return model


def _generation(save_dir: str) -> str:
    """The directory of the cache's current generation (every file is read from it, so a
    run saving a new generation meanwhile does not mix two caches)."""
    generation = current_generation(save_dir)
    if generation is None or not os.path.isdir(os.path.join(save_dir, generation)):
        raise FileNotFoundError(
            f"{save_dir} holds no persisted encoder cache (no current generation): fit "
            "with CacheConfig(save_dir=...) first"
        )
    return os.path.join(save_dir, generation)


def _manifest(root: str) -> Dict[str, Any]:
    manifest = read_json(os.path.join(root, MANIFEST_NAME))
    if manifest.get("version") != MANIFEST_VERSION:
        raise CacheMismatchError(
            f"{root}: manifest version {manifest.get('version')!r}, this version reads "
            f"{MANIFEST_VERSION}: fit once more to rebuild the cache"
        )
    if manifest.get("key_extractors"):
        raise CacheMismatchError(
            f"{root} was built with key_extractors {sorted(manifest['key_extractors'])}: its "
            "rows are keyed by them, not by dataset position; encode the corpus instead"
        )
    return manifest


def _check(root: str, relative: str, sha256: Optional[str], verify: bool) -> str:
    problem = file_problem(root, relative, sha256, verify)
    if problem is not None:
        raise CacheMismatchError(f"the cache in {root}: {problem}; fit again to rebuild it")
    return os.path.join(root, relative)


def _open_store(root: str, name: str, encoder: Any, manifest: dict, verify: bool):
    """The store of encoder ``name`` loaded from the cache, after its checks."""
    record = manifest.get("encoders", {}).get(name)
    if record is None:
        raise CacheMismatchError(
            f"encoder {name!r} of the servable is not in the cache in {root}: it was filled "
            "for another model"
        )
    saved = record["fingerprint"]
    dtype_name = saved.get("dtype", "None").replace("torch.", "")
    dtype = None if dtype_name == "None" else getattr(torch, dtype_name)
    kind = saved.get("store", CacheType.DISK if saved.get("file") == "disk" else CacheType.CPU)
    store_class = STORES.get(kind)
    if store_class is None:
        raise CacheMismatchError(
            f"encoder {name!r} was cached by the storage kind {kind!r}, which is not in "
            f"quaterion.train.cache.STORES: register it (STORES[{kind!r}] = YourStore) before "
            "reading the cache"
        )
    check_store_class(store_class, kind)
    config = CacheConfig(cache_type=kind, dtype=dtype, save_dir=root)
    store = store_class.from_config(encoder, name, kind, config)
    changed = [key for key, value in encoder_fingerprint(store).items() if saved.get(key) != value]
    if changed == ["code"] and "code" not in saved:
        raise CacheMismatchError(
            f"the cache in {root} was written by an older version, which did not record the "
            f"code of encoder {name!r}: fit again to rebuild it"
        )
    if changed:
        raise CacheMismatchError(
            f"encoder {name!r} of the servable differs from the cached one ({', '.join(changed)}"
            "): its stored rows are not this encoder's outputs; read the cache with the "
            "servable of the fitted model, or encode the corpus"
        )
    path = _check(root, f"encoders/{name}", record.get("file_sha256"), verify)
    store.load_cache(path)
    problem = rows_problem(name, store, record, verify)
    if problem is not None:
        raise CacheMismatchError(f"the cache in {root}: {problem}; fit again to rebuild it")
    return store


def _split(root: str, manifest: dict, split: str, verify: bool):
    loader = manifest.get("loaders", {}).get(split)
    if loader is None:
        raise CacheMismatchError(f"the cache in {root} has no {split!r} split")
    _check(root, f"{split}_labels", manifest.get("labels", {}).get(split), verify)
    cached = read_splits(root, [split])[split]
    if len(cached) == 0 and loader.get("length"):
        raise CacheMismatchError(
            f"the cache in {root} recorded no dataset order for {split!r} (a loader it "
            "could not serve from the store): encode the corpus instead"
        )
    return cached


def _meta(stores_meta: Dict[str, Any], keys: list) -> Any:
    """The merged meta records of ``keys`` (what the servable's head reads)."""
    from quaterion_models.utils.meta import merge_meta

    if not any(len(meta) for meta in stores_meta.values()):
        return [{} for _ in keys]
    return merge_meta({name: [meta[k] for k in keys] for name, meta in stores_meta.items()})
