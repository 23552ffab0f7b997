"""Puts models and loaders back into their non-cached state when fitting ends or fails."""

from functools import partial
from typing import TYPE_CHECKING, Optional

import pytorch_lightning as pl
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.trainer.states import TrainerFn
from typing_extensions import override

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader

if TYPE_CHECKING:
    from quaterion.train.trainable_model import TrainableModel


def restore_dataloader(model: "TrainableModel", loader: SimilarityDataLoader) -> None:
    """Plain ``TrainCollator`` again, no cached batches and no batches left to skip
    (idempotent); Lightning has shut the loader's persistent workers down when the fit
    ended."""
    loader.workers_stopped()
    loader.forget_progress()
    model.setup_dataloader(loader)
    loader.full_cache_used = False


class CleanupCallback(pl.Callback):
    """The one owner of the cache clean-up of a fit: when it ends (``teardown``) or raises
    (``on_exception``; Lightning runs no ``teardown`` hook then), unwrap the cached encoders,
    restore the loaders the cache set up and the training/validation loaders of the trainer.

    ``Quaterion.fit`` adds it; add it yourself to a trainer you ``fit`` directly after
    ``setup_cache``. A failure of the cache set-up itself is undone by the set-up.

    Attributes:
        failure: the exception Lightning handed to ``on_exception`` in the last fit
            (``None`` if it did not fail); ``Quaterion.fit`` raises it when Lightning's own
            clean-up fails while handling it and raises an error of its own instead.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failure: Optional[BaseException] = None

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.clean_up(trainer, pl_module)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self.failure = exception
            self.clean_up(trainer, pl_module)

    @staticmethod
    def clean_up(trainer: pl.Trainer, pl_module: "TrainableModel") -> None:
        """``pl_module.unwrap_cache()``, then a plain collate on every
        ``SimilarityDataLoader`` the trainer holds."""
        pl_module.unwrap_cache()
        loaders = [trainer.train_dataloader, trainer.val_dataloaders]
        apply_to_collection(loaders, SimilarityDataLoader, partial(restore_dataloader, pl_module))
