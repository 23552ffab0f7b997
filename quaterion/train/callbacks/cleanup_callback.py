"""Puts models and loaders back into their non-cached state when fitting ends."""

from typing import TYPE_CHECKING, Any, Iterator

import pytorch_lightning as pl
from typing_extensions import override

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache._batches import register

if TYPE_CHECKING:
    from quaterion.train.trainable_model import TrainableModel


def _iter_loaders(loaders: Any) -> Iterator[Any]:
    if loaders is None:
        return
    if isinstance(loaders, dict):
        yield from loaders.values()
    elif isinstance(loaders, (list, tuple)):
        yield from loaders
    else:
        yield loaders


def restore_dataloader(model: "TrainableModel", loader: Any) -> None:
    """Plain ``TrainCollator`` again and no cached batches, for a similarity loader.

    Idempotent; anything that is not a ``SimilarityDataLoader`` is left alone.
    """
    if not isinstance(loader, SimilarityDataLoader):
        return
    model.setup_dataloader(loader)
    register(loader, None)


class CleanupCallback(pl.Callback):
    """On fit teardown: unwrap cached encoders and restore the training/validation loaders."""

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        pl_module.unwrap_cache()
        for loader in _iter_loaders(getattr(trainer, "train_dataloader", None)):
            restore_dataloader(pl_module, loader)
        for loader in _iter_loaders(getattr(trainer, "val_dataloaders", None)):
            restore_dataloader(pl_module, loader)
