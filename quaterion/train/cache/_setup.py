"""Cache orchestration: collators and salts, load or fill, save, batches from the store."""

import warnings
from typing import Callable, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies import ParallelStrategy

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache import _distributed, _store
from quaterion.train.cache._batches import CachedRows, batches_from_store, register
from quaterion.train.cache._fill import fill_cache
from quaterion.train.cache._fingerprint import fingerprint, read_fingerprints, split_sha256
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder, CacheMode
from quaterion.train.cache.cache_train_collator import CacheTrainCollator
from quaterion_models.encoders import Encoder


def normalise_key_extractors(cache_config: CacheConfig, names) -> Dict[str, object]:
    """A single callable becomes ``{name: fn}`` for every cached encoder."""
    extractors = cache_config.key_extractors
    if callable(extractors):
        return {name: extractors for name in names}
    return dict(extractors)


def build_collator(loader, encoders, key_extractors, cache_encoders) -> CacheTrainCollator:
    """Cache collator over ``loader``'s own pre-collate function (TRAIN mode)."""
    return CacheTrainCollator(
        pre_collate_fn=loader.original_params["collate_fn"],
        encoder_collates={name: enc.get_collate_fn() for name, enc in encoders.items()},
        meta_extractors={name: enc.get_meta_extractor() for name, enc in encoders.items()},
        key_extractors=key_extractors,
        cachable_encoders=list(cache_encoders),
        mode=CacheMode.TRAIN,
    )


def start_process_group(trainer: pl.Trainer) -> None:
    """Start the process group now when every rank already runs this code (torchrun, SLURM).

    Lightning starts it in its first ``fit``/``predict`` call; the ranks must agree on loading
    or filling the cache before that. Lightning's own launcher starts its ranks inside that
    first call, one shared filesystem per node, so nothing is started for it here.
    """
    strategy = trainer.strategy
    if trainer.world_size == 1 or _distributed.world_size() > 1:
        return
    if not isinstance(strategy, ParallelStrategy):
        return
    env = strategy.cluster_environment
    if env is None or isinstance(env, LightningEnvironment) or not env.creates_processes_externally:
        return
    strategy.setup_environment()  # Lightning skips a group that is already started


def save_per_filesystem(trainer: pl.Trainer, save_dir: str, write: Callable[[], str]) -> None:
    """Write the cache once per filesystem that holds ``save_dir``.

    Global rank 0 writes first. On a filesystem shared by every node the others then see that
    generation and write nothing; on node-local disks the first process of every other node
    does not, and writes its own copy (every rank holds the complete store after the fill).
    """
    generation = write() if trainer.global_rank == 0 else None
    generation = _distributed.gather_objects(generation)[0]
    own_copy = trainer.local_rank == 0 and trainer.global_rank != 0
    if own_copy and _store.current_generation(save_dir) != generation:
        write()
    _distributed.barrier()


def setup_encoder_cache(
    trainer: pl.Trainer,
    encoders: Dict[str, Encoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    cache_config: CacheConfig,
) -> bool:
    """Fill (or load) every cache encoder in ``encoders``; ``False`` if none is cached.

    Both loaders get the cache collator (keys for cached encoders) and the salts
    ``"train"`` / ``"val"``. When every encoder is cached with default keys and a loader has
    the default Group/Pairs layout, its training batches come from the store alone (see
    :func:`~quaterion.train.cache._batches.cached_loader`).
    """
    cache_encoders = {n: e for n, e in encoders.items() if isinstance(e, CacheEncoder)}
    if not cache_encoders:
        return False
    key_extractors = normalise_key_extractors(cache_config, cache_encoders)
    loaders = {
        split: loader
        for split, loader in (("train", train_dataloader), ("val", val_dataloader))
        if loader is not None
    }
    for split, loader in loaders.items():
        loader.collate_fn = build_collator(loader, encoders, key_extractors, cache_encoders)
        loader.set_salt(split)
    save_dir = cache_config.save_dir
    expected = (
        _store.expected_manifest(cache_encoders, train_dataloader, val_dataloader, key_extractors)
        if save_dir
        else None
    )
    content = None
    if cache_config.verify_content:
        content = {n: e.wrapped_encoder.get_collate_fn() for n, e in cache_encoders.items()}
    read: Dict[str, dict] = {}

    def current(split: str) -> dict:
        if split not in read:
            read[split] = read_fingerprints(loaders[split], cache_config, content)
        return read[split]

    start_process_group(trainer)
    splits = _store.try_load(save_dir, cache_encoders, expected, current) if save_dir else None
    # The fill runs collectives, so every rank must take the same branch: one rank that could
    # not load (a node-local disk without a copy, a stale copy) makes every rank fill.
    loaded = _distributed.gather_objects(splits is not None)
    if not all(loaded):
        if splits is not None:
            missing = [rank for rank, ok in enumerate(loaded) if not ok]
            warnings.warn(
                f"The encoder cache in {save_dir} loaded here, but not on rank(s) {missing} "
                "(no valid copy on their disk): every rank fills it again",
                stacklevel=2,
            )
        splits = None
    if splits is None:
        for enc in cache_encoders.values():
            enc.reset_cache()
        filled = fill_cache(trainer, cache_encoders, list(loaders.values()), cache_config)
        if not all(enc.is_filled() for enc in cache_encoders.values()):
            raise RuntimeError(
                "The cache fill ran in processes whose results this one cannot see (e.g. "
                "strategy='ddp_spawn' or a notebook launcher): use strategy='ddp' (Lightning "
                "starts the ranks as scripts) or torchrun, or configure_caches() -> None"
            )
        splits = dict(zip(loaders, filled))

        def written(split: str) -> dict:
            cached = splits[split]
            if cached is None or content is not None:
                return current(split)
            return fingerprint(split_sha256(cached))

        if save_dir:
            save_per_filesystem(
                trainer,
                save_dir,
                lambda: _store.save(save_dir, cache_encoders, splits, expected, written),
            )
    from_store = len(cache_encoders) == len(encoders) and not key_extractors
    for split, loader in loaders.items():
        cached = splits.get(split)
        usable = (
            from_store
            and cached is not None
            and batches_from_store(loader)
            and len(cached) == len(loader.dataset)
        )
        register(loader, CachedRows(loader, cached, cache_encoders) if usable else None)
    return True
