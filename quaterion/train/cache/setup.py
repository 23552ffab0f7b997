"""Cache set-up: which encoders get a store, load or fill it, persist it, serve batches."""

import contextlib
import dataclasses
import logging
import os
import warnings
from functools import partial
from typing import Callable, Dict, Iterator, Optional, Tuple, TypeVar, Union

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from pytorch_lightning.plugins.environments import LightningEnvironment

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion import distributed
from quaterion.train.cache import _save_dir, persist
from quaterion.train.cache._batches import serve_loaders
from quaterion.train.cache._run import CacheRun
from quaterion.train.cache.cache_model import fill_cache
from quaterion.train.cache._fingerprint import expected_manifest, read_split, split_fingerprints
from quaterion.train.cache.cache_config import CacheConfig, CacheType, check_save_dir
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion.train.cache.store import check_store_class
from quaterion.train.cache.stores import STORES
from quaterion_models.encoders import Encoder

logger = logging.getLogger(__name__)
Loaders = Dict[str, SimilarityDataLoader]
LOADED_ENV = "QUATERION_CACHE_LOADED"  # the cache rank 0 loaded before Lightning started the ranks
T = TypeVar("T")


def wrap_encoder(
    encoder: Encoder, cache_config: CacheConfig, encoder_name: str = ""
) -> Union[Encoder, CacheEncoder]:
    """The cache wrapper ``encoder`` gets under ``cache_config``, or ``encoder`` itself."""
    if isinstance(encoder, CacheEncoder):
        return encoder
    if encoder.trainable:
        if encoder_name in cache_config.mapping:
            raise ValueError(
                f"Can't configure cache for encoder {encoder_name}. "
                "Encoder must be frozen to cache it"
            )
        return encoder
    cache_type = cache_config.mapping.get(encoder_name) or cache_config.cache_type
    if cache_type is None:
        logger.info(
            "Encoder %r is frozen and could be cached: add it to CacheConfig.mapping",
            encoder_name,
        )
    if cache_type in (None, CacheType.NONE):
        return encoder
    if cache_type == CacheType.GPU and not torch.cuda.is_available():
        raise ValueError(
            f"`CacheType.GPU` has been chosen for `{encoder_name}` encoder, "
            "but cuda is not available"
        )
    store_class = check_store_class(STORES[cache_type], cache_type)
    check_save_dir(cache_type, cache_config.save_dir)  # STORES may have changed since
    return store_class.from_config(encoder, encoder_name, cache_type, cache_config)


def apply_cache_config(
    encoders: Union[Encoder, Dict[str, Encoder]], cache_config: CacheConfig
) -> Union[Encoder, Dict[str, Encoder]]:
    """New dict of encoders with the frozen ones wrapped as ``cache_config`` asks."""
    if cache_config.cache_type == CacheType.NONE:
        return encoders
    if not isinstance(encoders, dict):
        return wrap_encoder(encoders, cache_config)
    extractors = cache_config.key_extractors
    unknown = sorted(set(extractors) - set(encoders)) if isinstance(extractors, dict) else []
    if unknown:
        raise ValueError(
            f"CacheConfig.key_extractors names encoders {unknown} that the model does not "
            f"have (encoders: {sorted(encoders)}); key the dict by one of those names"
        )
    unknown = sorted(set(cache_config.mapping) - set(encoders))
    if unknown:
        warnings.warn(
            f"CacheConfig.mapping names encoders {unknown} that the model does not have "
            f"(encoders: {sorted(encoders)}); those entries are ignored",
            stacklevel=3,
        )
    return {name: wrap_encoder(enc, cache_config, name) for name, enc in encoders.items()}


def cached_encoders(encoders: Dict[str, Encoder]) -> Dict[str, CacheEncoder]:
    """The :class:`CacheEncoder` entries of ``encoders``."""
    return {name: enc for name, enc in encoders.items() if isinstance(enc, CacheEncoder)}


def unwrap_encoders(encoders: Dict[str, Encoder]) -> Dict[str, Encoder]:
    """New dict with every :class:`CacheEncoder` replaced by its wrapped encoder."""
    return {
        name: enc.wrapped_encoder if isinstance(enc, CacheEncoder) else enc
        for name, enc in encoders.items()
    }


def encoders_persisted(dir_path: Optional[str], encoders: Dict[str, Encoder]) -> bool:
    """``True`` iff ``<dir>/encoders/<name>`` exists for every cached encoder."""
    if not dir_path:
        return False
    root = persist.encoders_cache_path(dir_path)
    return all(os.path.isfile(os.path.join(root, name)) for name in cached_encoders(encoders))


def save_cache(
    dir_path: Optional[str],
    encoders: Dict[str, Encoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
) -> None:
    """Persist cached encoders, the labels of each loader's cached split and a manifest
    (recording the key extractors of the cache set-up's collator on ``train_dataloader``)."""
    if not dir_path:
        return
    cache_encoders = cached_encoders(encoders)
    loaders = _loaders(train_dataloader, val_dataloader)
    # the keys the cache was filled with: those of the set-up's collator on the loader
    extractors = getattr(train_dataloader.collate_fn, "key_extractors", None) or {}
    expected = expected_manifest(cache_encoders, loaders, extractors)
    full = len(cache_encoders) == len(encoders)
    layouts = store_layouts(loaders)
    splits = {
        split: read_split(dl, layouts[split]) if full else None for split, dl in loaders.items()
    }
    written = split_fingerprints(loaders, layouts, CacheConfig(), None, splits)
    dir_path = _save_dir.prepare(dir_path)
    _save_dir.require_writable(dir_path, "save_cache writes the cache there")
    lock = _save_dir.SaveDirLock(dir_path)
    try:
        lock.exclusive()
        persist.save(dir_path, cache_encoders, splits, expected, written)
    finally:
        lock.release()


def load_cache(
    dir_path: str,
    encoders: Dict[str, Encoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
) -> None:
    """Load the files of :func:`save_cache` without re-checking the manifest (holding the
    directory's lock shared: a writer in another process waits)."""
    root = persist.encoders_cache_path(dir_path)
    cache_encoders = cached_encoders(encoders)
    with _save_dir.shared_hold(dir_path):
        for name, enc in cache_encoders.items():
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                raise RuntimeError(
                    "Encoder cache was configured, but not found. Expected to find cache at "
                    f"{path}, but file does not exists!"
                )
            enc.load_cache(path)
        loaders = _loaders(train_dataloader, val_dataloader)
        persist.read_splits(dir_path, list(loaders))  # checked readable


def batches_from_store(loader: SimilarityDataLoader) -> bool:
    """Whether a fully cached fit can serve ``loader``'s batches from the store alone: a
    sized, map-style loader whose class keeps its layout, with the class's own collate."""
    try:
        if isinstance(loader.dataset, torch.utils.data.IterableDataset) or len(loader.dataset) < 0:
            return False
    except TypeError:
        return False
    layout = type(loader)
    return layout.keeps_batch_layout() and loader.original_params["collate_fn"] == (
        layout.pre_collate_fn
    )


def store_layouts(loaders: Dict[str, SimilarityDataLoader]) -> Dict[str, Optional[type]]:
    """Split -> the loader class that lays out its batches when they can come from the store
    (:func:`batches_from_store`), else ``None``: decided once, handed to the fill, the
    fingerprints and the serving."""
    return {split: type(dl) if batches_from_store(dl) else None for split, dl in loaders.items()}


@dataclasses.dataclass
class CachedLoaders:
    """What the cache set-up hands to ``trainer.fit``.

    Attributes:
        train: the training loader to fit on: one served from the store when the split is
            fully cached, else the given loader.
        val: the same for the validation loader (``None`` without one).
        cached: whether any encoder is cached.
        served: whether the training batches come from the store alone.
        hold: the shared lock on ``save_dir`` the fit keeps (no other job rewrites the cache
            until it ends, while Lightning's launcher starts the other ranks); ``release()`` it
            when the fit ends, as ``TrainableModel.unwrap_cache`` does.
    """

    train: Optional[DataLoader]
    val: Optional[DataLoader]
    cached: bool = False
    served: bool = False
    hold: Optional[_save_dir.SaveDirLock] = None


def cache_loaders(
    trainer: pl.Trainer,
    encoders: Dict[str, Encoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    cache_config: CacheConfig,
) -> CachedLoaders:
    """Fill (or load) every cache encoder in ``encoders``; the loaders to fit on.

    Both loaders get the salts ``"train"`` / ``"val"`` and the cache collator (keys for
    cached encoders). When every encoder is cached with default keys and a loader
    has the default Group/Pairs layout, its training batches come from the store alone.
    With no encoder cached the loaders are left as they are (``TrainableModel.cache_loaders``
    gave them the model's plain collate before).
    """
    cache_encoders = cached_encoders(encoders)
    if not cache_encoders:
        return CachedLoaders(train_dataloader, val_dataloader)
    loaders = _loaders(train_dataloader, val_dataloader)
    extractors = cache_config.key_extractors  # one callable: for every cached encoder
    extractors = dict.fromkeys(cache_encoders, extractors) if callable(extractors) else extractors
    layouts = store_layouts(loaders)  # what the cache needs of the loaders' layout, once
    run = CacheRun(trainer, encoders, cache_encoders, loaders, layouts, extractors, cache_config)
    if cache_config.views > 1 and not (run.full and layouts["train"]):
        raise ValueError(
            f"CacheConfig(views={cache_config.views}) serves stored views from the store alone: "
            "it needs every encoder frozen and cached, no key_extractors, and a sized Group or "
            "Pairs loader with its class's own collate; meet those, or use views=1"
        )
    for split, loader in loaders.items():
        loader.set_salt(split)  # keys stable across runs, distinct across the splits
    with _held_save_dir(trainer, cache_config.save_dir) as (save_dir, lock):
        splits = _load_or_fill(run, save_dir, lock)
        served = serve_loaders(run, splits, partial(getattr, trainer, "current_epoch"))
    return CachedLoaders(
        served.get("train", train_dataloader),
        served.get("val", val_dataloader),
        cached=True,
        served="train" in served,
        hold=lock,
    )


def _load_or_fill(
    run: CacheRun, save_dir: Optional[str], lock: Optional[_save_dir.SaveDirLock]
) -> dict:
    """The splits of a persisted cache that matches ``run``, or of a new fill (saved in
    ``save_dir`` when set, under the exclusive lock rank 0 holds); ``(save_dir, lock)`` of
    :func:`_held_save_dir`."""
    if not save_dir:
        return fill_cache(run)
    trainer, config, stores = run.trainer, run.config, run.stores
    content = {n: e.wrapped_encoder.get_collate_fn() for n, e in stores.items()}
    content = content if config.verify_content else None
    filled: Dict[str, object] = {}  # the fill's splits, once there are: no second data pass
    current = split_fingerprints(run.loaders, run.layouts, config, content, filled)
    expected = expected_manifest(stores, run.loaders, run.key_extractors, config.views)
    verify = config.verify_checksums
    tidy = lock is not None  # the lock holder removes what killed runs left
    load = partial(persist.try_load, save_dir, stores, expected, current, verify, tidy)
    seen = persist.current_generation(save_dir)
    splits = _agreed_load(load, save_dir)
    _same_cache_as_rank_zero(trainer, save_dir, splits is not None)
    if splits is not None:
        return splits
    why = "no cache there matches this run, so it would be filled and written"
    _on_every_rank(partial(_save_dir.require_writable, save_dir, why))  # before any encoding

    def moved() -> bool:
        return persist.current_generation(save_dir) != seen

    # another job may be writing this save_dir: wait for its lock, or (``taken`` false) stop
    # waiting once it switched to a new cache, which a fit of it holds
    taken = _lock_every_copy(trainer, lock, moved)
    if any(distributed.gather_objects(moved())):
        # another job wrote a cache while this one waited: reuse it if it fits (two jobs
        # racing for the lock never both fill)
        _on_every_rank(lock.shared if lock and not taken else None)
        logger.info("Another process wrote the encoder cache in %s meanwhile: trying it", save_dir)
        splits = _agreed_load(load, save_dir)
        if splits is not None:
            return splits
        if not taken:
            _lock_every_copy(trainer, lock)
    splits = fill_cache(run)
    filled.update(splits)  # what the manifest records of the data comes from the fill
    write = partial(persist.save, save_dir, stores, splits, expected, current)
    persist.save_per_filesystem(trainer, save_dir, write)
    return splits


@contextlib.contextmanager
def _held_save_dir(
    trainer: pl.Trainer, save_dir: Optional[str]
) -> Iterator[Tuple[Optional[str], Optional[_save_dir.SaveDirLock]]]:
    """``(save_dir, lock)`` while the cache works in ``save_dir``: the directory prepared on
    every rank before anything is encoded, and a hold on it by the first process of every
    node (node-local copies; none on a read-only directory without a lock file). When the
    block ends the hold is shared again, kept for the fit (:attr:`CachedLoaders.hold`); an
    error releases it. ``(None, None)`` without a ``save_dir``."""
    _start_process_group(trainer)
    lock = None
    if save_dir:
        save_dir = _on_every_rank(partial(_save_dir.prepare, save_dir))
        lock = _save_dir.open_lock(save_dir) if trainer.local_rank == 0 else None
    try:
        _on_every_rank(lock and lock.shared)
        yield save_dir, lock
        _on_every_rank(lock and lock.shared)  # a writer's hold ends
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _agreed_load(load: Callable[[], Optional[dict]], save_dir: Optional[str]) -> Optional[dict]:
    """``load()`` on every rank; its splits only if it loaded on every rank.

    The fill runs collectives, so every rank must take the same branch: one rank that could
    not load (a node-local disk without a copy, a stale copy) makes every rank fill.
    """
    splits = load()
    loaded = distributed.gather_objects(splits is not None)
    if all(loaded):
        return splits
    if splits is not None:
        warnings.warn(
            f"The encoder cache in {save_dir} loaded here, but not on rank(s) "
            f"{[rank for rank, ok in enumerate(loaded) if not ok]} (no valid copy on "
            "their disk): every rank fills it again",
            stacklevel=4,
        )
    return None


def _same_cache_as_rank_zero(trainer: pl.Trainer, save_dir: str, loaded: bool) -> None:
    """Under Lightning's own launcher rank 0 sets its cache up alone, before ``trainer.fit``
    starts the other ranks (which inherit its environment): rank 0 records the generation it
    loaded there (with its process id: only the ranks it starts itself check it, never a
    later job that inherits its environment), and a rank that then finds another one, or none
    it can load, stops with an error (filling alone, it would wait forever for ranks that
    train)."""
    if trainer.world_size == 1 or distributed.world_size() > 1:
        return
    generation = f"{save_dir}/{persist.current_generation(save_dir)}" if loaded else None
    if "LOCAL_RANK" not in os.environ:  # rank 0, before the launcher starts the others
        # empty generation: it fills, and so do they
        os.environ[LOADED_ENV] = f"{os.getpid()}:{generation or ''}"
        return
    starter, _, expected = os.environ.get(LOADED_ENV, "").partition(":")
    if starter != str(os.getppid()):
        return  # not a rank that process started (e.g. a later job inheriting its environment)
    if expected and expected != generation:
        raise RuntimeError(
            f"Rank 0 loaded the encoder cache {expected} before Lightning started this rank, "
            f"which found {generation or 'no cache it can load in ' + save_dir}: another job "
            "rewrote it meanwhile, or save_dir is a relative path and the ranks run in "
            "different directories. Run again, with an absolute save_dir"
        )


def _lock_every_copy(
    trainer: pl.Trainer,
    lock: Optional[_save_dir.SaveDirLock],
    moved: Optional[Callable[[], bool]] = None,
) -> bool:
    """Exclusive locks on every directory the fill writes: global rank 0's, then each other
    node's copy (the first process of the node takes it; a directory shared with rank 0 is
    recognised by rank 0's record and covered by its lock). An error on any rank (e.g.
    another job holding a node's copy) is raised on every rank. ``False`` on every rank,
    nothing held, when rank 0 stopped waiting because ``moved()`` turned true."""
    _on_every_rank(lock and lock.unlock)  # no shared hold left
    rank_zero = trainer.global_rank == 0 and lock is not None
    record = _on_every_rank(partial(lock.exclusive, moved) if rank_zero else str)
    record = distributed.broadcast_from_rank_zero(record)
    if record is None:
        return False
    beside = trainer.global_rank != 0 and lock is not None and record != ""
    _on_every_rank(partial(lock.exclusive_beside, record) if beside else None)
    return True


def _on_every_rank(function: Optional[Callable[[], T]]) -> Optional[T]:
    """``function()`` (``None``: nothing) in a :func:`~quaterion.distributed.fail_together`
    block: an error it raises on any rank is raised on every rank, so no rank goes on to wait
    in a collective for one that stopped."""
    with distributed.fail_together("The encoder cache set-up"):
        return function() if function is not None else None


def _loaders(train: SimilarityDataLoader, val: Optional[SimilarityDataLoader]) -> Loaders:
    return {split: dl for split, dl in (("train", train), ("val", val)) if dl is not None}


def _start_process_group(trainer: pl.Trainer) -> None:
    """Start the process group now when every rank already runs this code (torchrun, SLURM).

    Lightning starts it in its first ``fit``/``predict`` call; the ranks must agree on loading
    or filling the cache before that. Lightning's own launcher starts its ranks inside that
    first call, one shared filesystem per node, so nothing is started for it here.
    """
    if trainer.world_size == 1 or distributed.world_size() > 1:
        return
    env = getattr(trainer.strategy, "cluster_environment", None)  # a ParallelStrategy's
    if env is None or isinstance(env, LightningEnvironment) or not env.creates_processes_externally:
        return
    trainer.strategy.setup_environment()  # Lightning skips a group that is already started
