"""``Quaterion``: entry points to fit and evaluate similarity models."""

import contextlib
import warnings
from typing import Dict, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, RichModelSummary
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.train.cache import CacheType
from quaterion.train.cache.cache_model import FEW_WORKERS_WARNING
from quaterion.train.ckpt_path_check import check_ckpt_path
from quaterion.train.rank_batches import batch_count
from quaterion.train.fit_checks import (
    check_loader_against_loss,
    check_not_empty,
    warn_ineffective_options,
)
from quaterion.train.callbacks import (
    CleanupCallback,
    GuardCallback,
    MetricsCallback,
    RankFailureCallback,
)
from quaterion.train.trainable_model import TrainableModel
from quaterion.utils.progress_bar import QuaterionProgressBar


def _check_loaders(
    model: TrainableModel,
    train_dataloader: SimilarityDataLoader,
    val_dataloader: Optional[SimilarityDataLoader],
) -> None:
    for name, loader in (
        ("train_dataloader", train_dataloader),
        ("val_dataloader", val_dataloader),
    ):
        if loader is not None:
            check_loader_against_loss(model.loss, loader, name)
            check_not_empty(loader, name)


def _check_inputs(model, trainer, train_dataloader, val_dataloader) -> None:
    if not isinstance(model, TrainableModel):
        raise TypeError(f"trainable_model must be a TrainableModel, got {type(model).__name__}")
    if trainer is not None and not isinstance(trainer, pl.Trainer):
        kind = type(trainer)
        raise TypeError(
            f"trainer must be a pytorch_lightning.Trainer or None (the default trainer), got "
            f"{kind.__module__}.{kind.__qualname__}; pass pl.Trainer(**options) with "
            "`import pytorch_lightning as pl` (not the options, nor lightning.pytorch's Trainer)"
        )
    if model.model is None:
        raise TypeError(
            "trainable_model has no SimilarityModel: configure_encoders() and configure_head() "
            "must return an Encoder (or dict of them) and an EncoderHead, not None"
        )
    if model.loss is None:
        raise TypeError("trainable_model.configure_loss() returned None; return a SimilarityLoss")
    for name, loader in (
        ("train_dataloader", train_dataloader),
        ("val_dataloader", val_dataloader),
    ):
        if (loader is not None or name == "train_dataloader") and not isinstance(
            loader, SimilarityDataLoader
        ):
            raise TypeError(
                f"{name} must be a SimilarityDataLoader (PairsSimilarityDataLoader or "
                f"GroupSimilarityDataLoader), got {type(loader).__name__}"
            )


def _log_steps(train_batches: Optional[int]) -> dict:
    """``log_every_n_steps`` for an epoch of ``train_batches`` (none when unknown or 0)."""
    return {"log_every_n_steps": min(50, train_batches)} if train_batches else {}


def _add_callbacks(trainer: pl.Trainer) -> None:
    """Quaterion's callbacks, each unless the trainer has one. The
    :class:`RankFailureCallback` goes first, so that its channel is open before any other
    callback's ``setup`` runs (one that raises on one rank is then reported to every rank)."""
    for callback_type in (CleanupCallback, MetricsCallback, GuardCallback, RankFailureCallback):
        if not any(isinstance(cb, callback_type) for cb in trainer.callbacks):
            first = callback_type is RankFailureCallback
            trainer.callbacks.insert(0 if first else len(trainer.callbacks), callback_type())


def _raise_if_another_rank_failed(trainer: pl.Trainer, error: Optional[BaseException]) -> None:
    """Raise ``RankFailedError`` when another rank's failure stopped (or outlived) this rank's
    fit; the failing rank keeps its own error."""
    for callback in trainer.callbacks:
        if isinstance(callback, RankFailureCallback):
            failure = callback.rank_failed_error()
            if failure is not None:
                raise failure from error


def _raise_the_first_failure(trainer: pl.Trainer, error: BaseException) -> None:
    """Raise the exception the fit failed with when Lightning's clean-up after it failed in
    turn and ``error`` is that second failure (e.g. its teardown asks a loader whose
    ``iter()`` raised for its length: "Please call `iter(combined_loader)` first"), so that
    callers see, and can catch, their own error."""
    for callback in trainer.callbacks:
        if isinstance(callback, CleanupCallback):
            first = callback.failure
            if first is None or first is error:
                continue
            context = error.__context__
            while context is not None and context is not first:
                context = context.__context__
            if context is first:
                raise first from first.__cause__  # Lightning's follow-up error left out


class Quaterion:
    """Namespace of the training entry points (class and static methods only)."""

    @classmethod
    def fit(
        cls,
        trainable_model: TrainableModel,
        trainer: Optional[pl.Trainer],
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader] = None,
        ckpt_path: Optional[str] = None,
    ) -> None:
        """Fill the encoder cache if configured, then ``trainer.fit`` the model.

        Args:
            trainable_model: model to train.
            trainer: Lightning trainer; ``None`` builds one from :meth:`trainer_defaults`
                (which then needs ``val_dataloader`` for early stopping).
            train_dataloader: training data.
            val_dataloader: validation data.
            ckpt_path: checkpoint to resume from (handed to ``trainer.fit``); a local path
                is checked before the cache fill (an existing, complete checkpoint file), see
                :func:`~quaterion.train.ckpt_path_check.check_ckpt_path`.

        After ``fit`` returns the model holds its original encoders again and both loaders
        can be reused (another ``fit``, or plain iteration).

        Under DDP, when another rank fails (in its step, a callback, a loader, the encoder
        cache fill), this rank raises :class:`~quaterion.distributed.RankFailedError` naming
        that rank, where it failed and its error (see
        :class:`~quaterion.train.callbacks.rank_failure_callback.RankFailureCallback`); the
        failing rank raises its own error.
        """
        _check_inputs(trainable_model, trainer, train_dataloader, val_dataloader)
        check_ckpt_path(ckpt_path, trainer)
        _check_loaders(trainable_model, train_dataloader, val_dataloader)
        train_batches = batch_count(train_dataloader)
        if trainer is None:
            if val_dataloader is None:
                raise ValueError(
                    "trainer=None builds the default trainer, which stops early on "
                    "`validation_loss` and so needs a val_dataloader; pass val_dataloader, or "
                    "pass your own pl.Trainer(...)"
                )
            defaults = cls.trainer_defaults(trainable_model=trainable_model)
            trainer = pl.Trainer(**defaults, **_log_steps(train_batches))
        _add_callbacks(trainer)
        for callback in trainer.callbacks:
            if isinstance(callback, RankFailureCallback):
                callback.forget()  # a failure seen by an earlier fit on this trainer is over
            if isinstance(callback, CleanupCallback):
                callback.failure = None
        warn_ineffective_options(trainable_model, trainer, train_batches)
        # the spec's steps 4 and 5: setup_dataloader on both loaders (an override runs in
        # cached fits too), then the cache set-up
        try:  # the cache fill runs trainer.predict: another rank may fail in it
            fit = trainable_model.cache_loaders(trainer, train_dataloader, val_dataloader)
        except BaseException as error:
            _raise_if_another_rank_failed(trainer, error)
            raise
        with warnings.catch_warnings() if fit.served else contextlib.nullcontext():
            if fit.served:
                warnings.filterwarnings("ignore", FEW_WORKERS_WARNING, PossibleUserWarning)
            # CleanupCallback restores the model and loaders when the fit ends or raises
            try:
                trainer.fit(
                    model=trainable_model,
                    train_dataloaders=fit.train,
                    val_dataloaders=fit.val,
                    ckpt_path=ckpt_path,
                )
            except BaseException as error:
                _raise_if_another_rank_failed(trainer, error)
                _raise_the_first_failure(trainer, error)
                raise
            _raise_if_another_rank_failed(trainer, None)

    @classmethod
    def evaluate(cls, evaluator, dataset, model) -> Dict[str, torch.Tensor]:
        """``evaluator.evaluate(dataset, model)``; see ``quaterion.eval.evaluator``.

        Raises:
            TypeError: ``evaluator`` has no ``evaluate`` method (e.g. ``None``, or the
                arguments in another order: the order is evaluator, dataset, model).
        """
        if not callable(getattr(evaluator, "evaluate", None)):
            raise TypeError(
                "evaluator must be an Evaluator (e.g. Evaluator(RetrievalRPrecision(), "
                f"GroupSampler(sample_size=1000))), got {type(evaluator).__name__}; the "
                "arguments are Quaterion.evaluate(evaluator, dataset, model)"
            )
        return evaluator.evaluate(dataset, model)

    @staticmethod
    def trainer_defaults(
        trainable_model: Optional[TrainableModel] = None,
        train_dataloader: Optional[SimilarityDataLoader] = None,
    ) -> dict:
        """Keyword arguments for ``pl.Trainer``, with fresh callback instances on each call.

        Early stopping on ``validation_loss``, Quaterion's progress bar, a rich model
        summary, one device, no epoch limit; checkpointing is off for a model whose encoders
        are all frozen and cached.
        """
        defaults = {
            "callbacks": [
                QuaterionProgressBar(console_kwargs={"tab_size": 4}),
                EarlyStopping("validation_loss"),
                RichModelSummary(max_depth=3),
            ],
            "accelerator": "auto",
            "devices": 1,
            "max_epochs": -1,
            "enable_model_summary": False,
        }
        defaults.update(_log_steps(batch_count(train_dataloader)))
        if trainable_model is not None:
            encoders = trainable_model.model.encoders.values()
            cache_config = trainable_model.configure_caches()
            if (
                all(not encoder.trainable for encoder in encoders)
                and cache_config is not None
                and cache_config.cache_type != CacheType.NONE
            ):
                defaults["enable_checkpointing"] = False
        return defaults
