"""Resets attached metrics at epoch and sanity-check boundaries."""

import pytorch_lightning as pl


class MetricsCallback(pl.Callback):
    """Calls ``reset()`` on every ``trainable_model.attached_metrics`` entry at the start and
    end of each train and validation epoch, and after the sanity check."""

    @staticmethod
    def reset_metrics(trainable_model: pl.LightningModule) -> None:
        """``reset()`` every attached metric of ``trainable_model``."""
        for metric in getattr(trainable_model, "attached_metrics", []):
            metric.reset()

    def _reset(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.reset_metrics(pl_module)

    # the same reset at every boundary
    on_sanity_check_end = on_train_epoch_start = on_train_epoch_end = _reset
    on_validation_epoch_start = on_validation_epoch_end = _reset
