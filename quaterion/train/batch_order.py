"""The training loader's batch order across a resumed fit.

Lightning itself saves the state of a stateful training loader (a
:class:`~quaterion.dataset.SimilarityDataLoader` is one) in every checkpoint, but hands it
back only when it resumes *inside* an epoch: a fit resumed from a checkpoint written at
an epoch's end (``ModelCheckpoint``'s default) never calls the loader's
``load_state_dict``. ``TrainableModel`` therefore keeps its own copy of the state
(:func:`checkpoint_entry`) and restores it before the loader draws the first resumed batch:
on the loader given to ``Quaterion.fit`` when Lightning loads the checkpoint, otherwise at
train start (:func:`settle_resumed_order`).
"""

import warnings
from typing import Any, Dict, Optional

import pytorch_lightning as pl

from quaterion.dataset.loader_state import keeps_state


def _stopped_inside_epoch(trainer: pl.Trainer) -> int:
    """Batches the fit has taken of the epoch in progress; 0 at an epoch's end (or start).
    At train start of a resumed fit: those of the checkpoint's epoch."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    return 0 if _at_last_batch(trainer) else progress.current.ready


def _at_last_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch in progress is its epoch's last: Lightning's flag, or (a resumed
    epoch, whose loader skipped the batches trained, never sets it) the epoch's count."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    return progress.is_last_batch or progress.current.ready >= trainer.num_training_batches


def checkpoint_entry(trainer: pl.Trainer) -> Optional[Dict[str, Any]]:
    """What a checkpoint written now keeps of the training loader: its state (``None``
    for a loader without one) and whether that state resumes inside the epoch in progress
    (its batch sampler was told of the batches taken, see :func:`note_progress`). ``None``
    outside a fit."""
    loader = trainer.train_dataloader
    if loader is None:
        return None
    done = _stopped_inside_epoch(trainer)
    noted = getattr(loader, "batches_trained", None)
    if noted is None:
        noted = getattr(getattr(loader, "batch_sampler", None), "batches_trained", None)
    return {
        "loader": loader.state_dict() if keeps_state(loader) else None,
        "replays_epoch": bool(done) and keeps_state(loader) and noted == done,
    }


def note_progress(trainer: pl.Trainer, batch_idx: int) -> None:
    """At the start of training step ``batch_idx``: tell the training loader's batch
    sampler, if it has ``note_batches_trained`` (as
    :class:`~quaterion.dataset.GroupCycleBatchSampler`), how many batches of its epoch the
    fit has taken (``None`` once it takes the epoch's last), so that its state in a
    checkpoint written inside the epoch resumes after them."""
    loader = trainer.train_dataloader
    note = getattr(loader, "note_batches_trained", None)  # a SimilarityDataLoader's
    if not callable(note):
        note = getattr(getattr(loader, "batch_sampler", None), "note_batches_trained", None)
    if callable(note):
        note(None if _at_last_batch(trainer) else batch_idx + 1)


def restore_order(entry: Optional[Dict[str, Any]], loader: Any) -> None:
    """Put the loader state of ``entry`` back into ``loader`` (when both have one). The
    batches a replayable loader trained inside an epoch are left out: Lightning hands
    them, with its own copy of the state, to the loader it iterates (under DDP a copy of
    ``loader``, which must not skip batches at its next iteration)."""
    if entry is not None and entry["loader"] is not None and keeps_state(loader):
        state = {k: v for k, v in entry["loader"].items() if k != "batches_trained"}
        loader.load_state_dict(state)


def settle_resumed_order(
    entry: Optional[Dict[str, Any]], trainer: pl.Trainer, restored: bool
) -> None:
    """At the start of a resumed fit: restore the training loader's state from ``entry``
    (the checkpoint's :func:`checkpoint_entry`) unless it is ``restored`` already (by
    :func:`restore_order`, or by Lightning), and warn where the resumed batches cannot be
    those of an uninterrupted fit. ``entry=None``: a checkpoint written before the loader
    state was kept."""
    loader = trainer.train_dataloader
    sampler = getattr(loader, "batch_sampler", None)
    kind = type(sampler).__name__
    if entry is None and keeps_state(sampler):
        warnings.warn(
            f"This fit is resumed from a checkpoint that holds no batch order (written by an "
            f"older version), so {kind} starts again from its seed: the resumed epochs repeat "
            "the first epochs' batches instead of continuing the order of an uninterrupted "
            "run. Give the resumed run's sampler another seed so that they are not repeated, "
            "or resume from a checkpoint written by this version.",
            stacklevel=3,
        )
    saved = None if entry is None else entry["loader"]
    if saved is not None and keeps_state(loader) and not restored:
        if getattr(loader, "num_workers", 0) > 0:
            warnings.warn(
                f"This fit is resumed from a checkpoint, but the training loader's worker "
                f"processes took the first resumed batches before its {kind} state could be "
                "restored (trainer.fit builds the loader's iterator before any hook sees the "
                "loader), so the order starts again from the sampler's seed. Resume through "
                "Quaterion.fit(..., ckpt_path=...), or with num_workers=0, to train on the "
                "batches of an uninterrupted fit.",
                stacklevel=3,
            )
        else:
            loader.load_state_dict(saved)
    done = _stopped_inside_epoch(trainer)
    _warn_if_inside_an_accumulation(trainer, done)
    replays = entry is not None and entry["replays_epoch"]
    if done and replays and getattr(loader, "num_workers", 0) > 0 and keeps_state(sampler):
        # the sampler resumes from its own state: the workers never see the batches trained
        warnings.warn(
            f"This fit is resumed in the middle of epoch {trainer.current_epoch} with loader "
            f"workers and a {kind} that continues from its state: the workers start their "
            "random streams "
            "at the first resumed batch instead of the epoch's first, so random transforms "
            "in the dataset draw other numbers for the rest of that epoch than in an "
            "uninterrupted fit (the batches themselves are the same). Use num_workers=0, or "
            "resume from a checkpoint written at an epoch's end, for identical data.",
            stacklevel=3,
        )
    if done and not replays:
        warnings.warn(
            f"This fit is resumed from a checkpoint written inside epoch "
            f"{trainer.current_epoch}, after {done} of its batches, and the training loader's "
            f"state does not hold where that epoch stopped (its {kind} cannot replay the rest "
            "of an epoch, or was not told of the batches trained: an override of "
            "on_train_batch_start must call super()). The rest of that epoch trains on the "
            "first batches of a new pass, so the resumed batches differ from an uninterrupted "
            "fit's. Resume from a checkpoint written at an epoch's end (ModelCheckpoint's "
            "default), or draw batches from a GroupCycleBatchSampler, for the same batches.",
            stacklevel=3,
        )


def _warn_if_inside_an_accumulation(trainer: pl.Trainer, done: int) -> None:
    """Warn when the checkpoint was written between two batches of one gradient
    accumulation (validation inside an epoch with ``accumulate_grad_batches``): the
    gradients of its first batches were not saved."""
    every = trainer.accumulate_grad_batches
    taken = done % every
    if taken:
        warnings.warn(
            f"This fit is resumed from a checkpoint written after batch {done} of epoch "
            f"{trainer.current_epoch}, inside a gradient accumulation of "
            f"accumulate_grad_batches={every} batches ({taken} of them taken). A checkpoint "
            "holds no gradients, so the resumed optimizer step sums the gradients of its "
            f"last {every - taken} batch(es) only and the weights differ from an "
            "uninterrupted fit's. Write checkpoints where an accumulation ends "
            "(every_n_train_steps, or a val_check_interval that is a multiple of "
            "accumulate_grad_batches), or resume from one written at an epoch's end.",
            stacklevel=3,
        )
