"""GuardCallback: stops a fit that would otherwise end with a silently wrong model."""

from typing import Any, List, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from typing_extensions import override

from quaterion import distributed


# Under DDP a deferred verdict is read once this many newer steps are queued behind it.
_DDP_VERDICT_LAG = 2


class NonFiniteLossError(FloatingPointError):
    """The training loss was NaN or infinite; the optimizer did not apply it."""


class GuardCallback(pl.Callback):
    """Raises on a non-finite training loss and on a training epoch without batches.

    The loss check runs before ``backward`` and is skipped when the model's
    ``check_finite_loss`` is ``False``. With the loss on the CPU it raises
    :class:`NonFiniteLossError` at once, so that step's gradients are never applied. On a CUDA
    device it keeps the hot path free of host syncs: the verdict is copied to the host
    asynchronously and read a step or two later (or at the end of the fit); until then the
    gradients of every step from the bad one on are zeroed on the device before the
    optimizer runs, so the weights stay finite.

    Under DDP the verdicts of all ranks are combined in one small ``all_reduce`` per step
    (queued on the device under NCCL), so every rank raises the same error at the same step
    and zeroes the shared gradients alike; deferred verdicts are then read once two newer
    steps are queued behind them, the same step on every rank.

    Args:
        asynchronous: force (``True``) or forbid (``False``) the deferred check; ``None``
            (default) defers on CUDA only.
    """

    def __init__(self, asynchronous: Optional[bool] = None):
        self.asynchronous = asynchronous
        self._all_finite: Optional[Tensor] = None  # device flag, sticky until raised
        self._pending: List[Tuple[Tensor, Any, int, int, int]] = []
        self._epoch_batches = 0
        self._batch_idx = 0

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._all_finite, self._pending = None, []

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_batches = 0

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._epoch_batches += 1
        self._batch_idx = batch_idx
        self._raise_resolved(wait=False)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed fit may restart at the end of an epoch: nothing left to read is fine then
        resumed = trainer.ckpt_path is not None
        if self._epoch_batches == 0 and trainer.num_training_batches != 0 and not resumed:
            raise ValueError(
                f"train_dataloader yielded no batch in epoch {trainer.current_epoch}: the "
                "dataset is empty (or every batch was dropped). Check the data, batch_size "
                "and drop_last."
            )

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._raise_resolved(wait=True)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._all_finite, self._pending = None, []

    @override
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        if not getattr(pl_module, "check_finite_loss", True) or not isinstance(loss, Tensor):
            return
        where = (trainer.current_epoch, trainer.global_step, self._batch_idx)
        deferred = self.asynchronous
        if deferred is None:
            deferred = loss.device.type == "cuda"
        finite = torch.isfinite(loss.detach()).all()
        # a sum keeps a NaN/inf of any element (and is the value of a scalar loss)
        record = torch.stack([finite.to(torch.float32), loss.detach().float().sum()])
        record = _across_ranks(record)  # [finite on every rank, value, rank of the value]
        if not deferred:
            if record[0].item() == 0:
                raise _error(record, *where)
            return
        finite = record[0] > 0
        self._all_finite = finite if self._all_finite is None else self._all_finite & finite
        event = None
        if record.device.type == "cuda":
            record = record.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self._pending.append((record, event, *where))

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if self._all_finite is None:
            return
        keep = self._all_finite
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    # masked_fill, not a product: 0 * NaN is NaN
                    param.grad.masked_fill_(~keep.to(param.grad.device), 0)

    def _raise_resolved(self, wait: bool) -> None:
        # Under DDP every rank must raise at the same step (a rank left behind would wait in
        # the next collective), so verdicts are read by age, not as soon as they are ready.
        by_age = distributed.world_size() > 1
        while self._pending:
            record, event, epoch, step, batch_idx = self._pending[0]
            if event is not None:
                if wait or (by_age and len(self._pending) > _DDP_VERDICT_LAG):
                    event.synchronize()
                elif by_age or not event.query():
                    return
            self._pending.pop(0)
            if record[0].item() == 0:
                self._pending = []
                raise _error(record, epoch, step, batch_idx, deferred=True)


def _across_ranks(record: Tensor) -> Tensor:
    """``[finite, loss]`` of this rank -> ``[finite on every rank, loss, rank]``, where the
    loss is that of the first rank whose loss is not finite (this rank's in one process).

    Under DDP every rank thus takes the same verdict: all raise at the same step and all
    zero the (all-reduced, so shared) gradients alike. One small ``all_reduce``, queued on
    the device under NCCL (no host sync).
    """
    stacked = distributed.stack_across_ranks(record)  # (world, 2)
    rank = stacked[:, 0].argmin()  # the first rank whose loss is not finite, if any
    value = stacked[:, 1].gather(0, rank.reshape(1))[0]
    return torch.stack([stacked[:, 0].min(), value, rank.to(record.dtype)])


def _error(
    record: Tensor, epoch: int, step: int, batch_idx: int, deferred: bool = False
) -> NonFiniteLossError:
    """The error for a record of :func:`_across_ranks`."""
    _, value, rank = record.tolist()
    ranks = distributed.world_size()
    where = f" on rank {int(rank)} of {ranks}" if ranks > 1 else ""
    applied = (
        "Its gradients and those of the steps after it were zeroed before the optimizer ran"
        if deferred
        else "The optimizer did not apply it"
    )
    return NonFiniteLossError(
        f"Training loss is {value}{where} at epoch {epoch}, step {step} (batch {batch_idx}). "
        f"{applied}, so the weights are still finite. Usual causes: a learning rate that is "
        "too high, NaN/inf in the data or the encoders' outputs, or a loss hyperparameter out "
        "of range; lower the learning rate or clip gradients (Trainer(gradient_clip_val=...)). "
        "Set check_finite_loss = False on the TrainableModel to train on regardless."
    )
