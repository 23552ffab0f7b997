"""Shared training entry for the examples: ``Quaterion.fit`` with the default trainer."""

import warnings

import pytorch_lightning as pl

from quaterion import Quaterion, TrainableModel


def fit(model: TrainableModel, train_dataloader, val_dataloader, max_epochs: int) -> pl.Trainer:
    """``Quaterion.fit`` with ``Quaterion.trainer_defaults`` and ``max_epochs`` overridden.

    Early stopping on ``validation_loss`` stays on. Lightning's "few workers" hint is
    silenced: the examples keep ``num_workers=0`` so that they run the same everywhere.
    """
    trainer_kwargs = Quaterion.trainer_defaults(model, train_dataloader)
    trainer_kwargs["max_epochs"] = max_epochs
    trainer = pl.Trainer(**trainer_kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        Quaterion.fit(
            trainable_model=model,
            trainer=trainer,
            train_dataloader=train_dataloader,
            val_dataloader=val_dataloader,
        )
    return trainer
