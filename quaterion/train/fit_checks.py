"""Checks ``Quaterion.fit`` runs before and around training (private).

Each function raises (or warns) with a message naming the argument, the offending value and
the fix, so that a wrong setup fails at the start instead of training on silently.
"""

import math
from typing import Any, List, Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from quaterion.dataset.similarity_data_loader import (
    GroupSimilarityDataLoader,
    PairsSimilarityDataLoader,
    SimilarityDataLoader,
)
from quaterion.loss import GroupLoss, PairwiseLoss, SimilarityLoss, TripletLoss


class LoaderLossMismatchError(NotImplementedError, TypeError):
    """A loader's sample type does not fit the loss (pairs for a group loss or vice versa).

    Also a ``NotImplementedError``, the type upstream raised for this mistake.
    """


# loader type -> (its sample type, the loss base it needs, examples, the other loader, its samples)
_PAIRINGS = {
    PairsSimilarityDataLoader: (
        "SimilarityPairSample",
        PairwiseLoss,
        "ContrastiveLoss or MultipleNegativesRankingLoss",
        "GroupSimilarityDataLoader",
        "SimilarityGroupSample",
    ),
    GroupSimilarityDataLoader: (
        "SimilarityGroupSample",
        GroupLoss,
        "TripletLoss or OnlineContrastiveLoss",
        "PairsSimilarityDataLoader",
        "SimilarityPairSample",
    ),
}


def check_loader_against_loss(loss: SimilarityLoss, loader: SimilarityDataLoader, name: str):
    """Raise :class:`LoaderLossMismatchError` unless ``loader`` yields what ``loss`` takes."""
    for loader_type, (samples, loss_base, examples, other, other_samples) in _PAIRINGS.items():
        if isinstance(loader, loader_type) and not isinstance(loss, loss_base):
            raise LoaderLossMismatchError(
                f"{name} is a {loader_type.__name__} ({samples} items), but the loss "
                f"{type(loss).__name__} is not a {loss_base.__name__}. Use a "
                f"{loss_base.__name__} such as {examples}, or give the loader {other_samples} "
                f"items through a {other}."
            )


def check_not_empty(loader: SimilarityDataLoader, name: str) -> None:
    """Raise ``ValueError`` if ``loader`` has a length and yields no batch.

    Loaders without a length (iterable datasets) are checked while training instead
    (:class:`~quaterion.train.callbacks.guard_callback.GuardCallback`).
    """
    try:
        samples = len(loader.dataset)
    except TypeError:
        return
    if samples == 0:
        raise ValueError(
            f"{name} has no samples: its dataset is empty. Check the data path and any "
            "filtering that built the dataset."
        )
    try:
        batches = len(loader)
    except TypeError:
        return
    if batches == 0:
        raise ValueError(
            f"{name} yields no batch: {samples} samples with batch_size={loader.batch_size} "
            f"and drop_last={loader.drop_last}. Lower batch_size or set drop_last=False."
        )


def check_batch_labels(loss: SimilarityLoss, batch: Any) -> None:
    """Check a CPU batch's values before the device transfer, through the loss's
    :meth:`~quaterion.loss.SimilarityLoss.check_batch_targets` (pair scores against
    ``score_range``, class ids of a classifier loss against its ``num_groups``).

    The loss then does not read these tensors again, so the step never waits for the device.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2 or not isinstance(batch[1], dict):
        return
    check = getattr(loss, "check_batch_targets", None)
    if callable(check):  # a loss that is not a SimilarityLoss checks nothing here
        check(batch[1])


def warn_ineffective_options(model: Any, trainer: pl.Trainer, train_batches: Optional[int]):
    """Warn once per fit about settings that will not change training (see the guide)."""
    for message in _ineffective_options(model, trainer, train_batches):
        rank_zero_warn(message, category=UserWarning)


def _ineffective_options(model: Any, trainer: pl.Trainer, train_batches: Optional[int]):
    loss = model.loss
    loss_name = type(loss).__name__
    config = loss.get_config_dict()
    messages: List[str] = []
    if trainer.barebones:
        messages.append(
            "Trainer(barebones=True) forbids self.log, so this fit logs nothing: no "
            f"train/validation loss and no attached metrics ({len(model.attached_metrics)}). "
            "Use a default Trainer (logger=False, enable_progress_bar=False are cheap) to "
            "see them."
        )
    if isinstance(loss, TripletLoss) and config.get("soft") and config.get("mining") != "hard":
        messages.append(
            f"TripletLoss(soft=True) has no effect with mining={config.get('mining')!r}: only "
            "mining='hard' has a soft-margin variant. Drop soft=True or use mining='hard'."
        )
    xbm = model.configure_xbm()
    if xbm is None:
        return messages
    if not isinstance(loss, GroupLoss):
        messages.append(
            f"configure_xbm() is set, but cross-batch memory works only with a GroupLoss; "
            f"{loss_name} will raise NotImplementedError at step {xbm.start_iteration + 1}. "
            "Return None from configure_xbm() or use a GroupLoss."
        )
    elif not loss.supports_xbm and type(loss).xbm_loss is GroupLoss.xbm_loss:
        messages.append(
            f"configure_xbm() is set, but {loss_name} has no xbm_loss and will raise "
            f"NotImplementedError at step {xbm.start_iteration + 1}. Return None from "
            "configure_xbm() or use TripletLoss(mining='hard' or 'semi_hard')."
        )
    elif isinstance(loss, TripletLoss) and config.get("mining") not in ("hard", "semi_hard"):
        messages.append(
            f"configure_xbm() has no effect: TripletLoss(mining={config.get('mining')!r}) "
            "ignores the memory (its xbm_loss is 0). Use mining='hard' or 'semi_hard', or "
            "return None from configure_xbm()."
        )
    if xbm.weight == 0:
        messages.append(
            "configure_xbm() has no effect: XbmConfig(weight=0) multiplies the memory loss by "
            "0. Give a positive weight or return None from configure_xbm()."
        )
    total_steps = _planned_steps(trainer, train_batches)
    if total_steps is not None and xbm.start_iteration + 1 >= total_steps:
        messages.append(
            f"configure_xbm() has no effect: the memory starts after step "
            f"{xbm.start_iteration} (XbmConfig.start_iteration) but this fit runs at most "
            f"{total_steps} steps. Lower start_iteration or train longer."
        )
    return messages


def _planned_steps(trainer: pl.Trainer, train_batches: Optional[int]) -> Optional[int]:
    limits = []
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        limits.append(trainer.max_steps)
    max_epochs = trainer.max_epochs
    if train_batches and max_epochs is not None and max_epochs >= 0:
        per_epoch = train_batches
        limit = trainer.limit_train_batches
        if isinstance(limit, int) and not isinstance(limit, bool):
            per_epoch = min(per_epoch, limit)
        elif isinstance(limit, float) and limit <= 1.0:
            per_epoch = int(per_epoch * limit)
        accumulate = max(1, trainer.accumulate_grad_batches)
        limits.append(math.ceil(per_epoch / accumulate) * max_epochs)
    return min(limits) if limits else None
