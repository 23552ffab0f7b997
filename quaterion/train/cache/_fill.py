"""The fill pass: run each frozen encoder once over the data through ``trainer.predict``."""

import contextlib
import random
import warnings
from typing import Dict, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache.cache_config import CacheConfig
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion.train.cache.cache_model import CacheModel

FEW_WORKERS_WARNING = ".*does not have many workers.*"
_DROP_PARAMS = (
    "collate_fn",
    "batch_sampler",
    "sampler",
    "shuffle",
    "batch_size",
    "drop_last",
    "num_workers",
)


@contextlib.contextmanager
def preserve_rng():
    """Restore the torch, CUDA, ``random`` and NumPy RNG states on exit.

    The fill must not shift the random stream, so that a cached run draws the same shuffles
    as an uncached one.
    """
    torch_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        random.setstate(py_state)
        np.random.set_state(np_state)


def fill_workers(loader: SimilarityDataLoader, cache_config: CacheConfig) -> int:
    """Worker count of the fill pass: ``cache_config.num_workers`` or the loader's."""
    if cache_config.num_workers is not None:
        return cache_config.num_workers
    return loader.num_workers


def fill_loader(loader: SimilarityDataLoader, cache_config: CacheConfig) -> DataLoader:
    """Plain, unshuffled ``DataLoader`` over ``loader.dataset`` with the fill settings."""
    params = {k: v for k, v in loader.original_params.items() if k not in _DROP_PARAMS}
    workers = fill_workers(loader, cache_config)
    if workers == 0:
        params.pop("persistent_workers", None)
        params.pop("prefetch_factor", None)
    return DataLoader(
        loader.dataset,
        collate_fn=loader.collate_fn,
        batch_size=cache_config.batch_size or 32,
        shuffle=False,
        num_workers=workers,
        **params,
    )


def fill_cache(
    trainer: pl.Trainer,
    cache_encoders: Dict[str, CacheEncoder],
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
    cache_config: CacheConfig,
) -> None:
    """Encode every distinct object of both loaders once with ``trainer.predict``."""
    loaders = [fill_loader(train_dataloader, cache_config)]
    if val_dataloader is not None:
        loaders.append(fill_loader(val_dataloader, cache_config))
    with preserve_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", FEW_WORKERS_WARNING, PossibleUserWarning)
        trainer.predict(CacheModel(cache_encoders), loaders, return_predictions=False)
