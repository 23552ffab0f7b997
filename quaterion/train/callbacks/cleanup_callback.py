"""Puts models and loaders back into their non-cached state when fitting ends."""

from functools import partial
from typing import TYPE_CHECKING

import pytorch_lightning as pl
from lightning_utilities.core.apply_func import apply_to_collection
from typing_extensions import override

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader

if TYPE_CHECKING:
    from quaterion.train.trainable_model import TrainableModel


def restore_dataloader(model: "TrainableModel", loader: SimilarityDataLoader) -> None:
    """Plain ``TrainCollator`` again and no cached batches (idempotent)."""
    model.setup_dataloader(loader)
    loader.full_cache_used = False


class CleanupCallback(pl.Callback):
    """On fit teardown: unwrap cached encoders and restore the training/validation loaders."""

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        pl_module.unwrap_cache()
        loaders = [trainer.train_dataloader, trainer.val_dataloaders]
        apply_to_collection(loaders, SimilarityDataLoader, partial(restore_dataloader, pl_module))
