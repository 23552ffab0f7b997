"""GuardCallback: stops a fit that would otherwise end with a silently wrong model."""

import math
import warnings
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from typing_extensions import override

from quaterion import distributed

# Under DDP a deferred verdict is read once this many newer steps are queued behind it.
_DDP_VERDICT_LAG = 2


class NonFiniteLossError(distributed.ErrorOnEveryRank, FloatingPointError):
    """The training loss was NaN or infinite; the optimizer did not apply it."""


class NonFiniteGradientError(distributed.ErrorOnEveryRank, FloatingPointError):
    """A gradient was NaN or infinite while the loss was finite; the optimizer did not apply it."""


class NonFiniteValidationError(distributed.ErrorOnEveryRank, FloatingPointError):
    """The validation (or test) loss of a batch was NaN or infinite."""


_FIX = (
    "Usual causes: a learning rate that is too high, NaN/inf in the data or the encoders' "
    "outputs, or a loss hyperparameter out of range; lower the learning rate or clip gradients "
    "(Trainer(gradient_clip_val=...)). Set check_finite_loss = False on the TrainableModel to "
    "train on regardless."
)


class _Verdict(NamedTuple):
    """A deferred check: ``flags`` (1 finite, 0 not) and the loss, read once ``event`` is done."""

    kind: str  # "loss" or "gradient"
    record: Tensor  # loss: [finite on every rank, value, its rank]; gradient: a flag per param
    event: Any
    where: str  # "epoch 0, step 2 (batch 2)"
    names: List[str]
    seq: int  # the backward pass it belongs to (counted by the callback)


class GuardCallback(pl.Callback):
    """Raises on a non-finite training loss or gradient, a non-finite validation loss and a
    training epoch without batches; warns on a non-finite validation metric.

    The training checks run before ``backward`` (loss) and before the optimizer step
    (gradients), and are skipped when the model's ``check_finite_loss`` is ``False``. On the
    CPU they raise :class:`NonFiniteLossError` / :class:`NonFiniteGradientError` at once, so
    that step is never applied. On a CUDA device they keep the hot path free of host syncs:
    the verdict is copied to the host asynchronously and read a step or two later (or at the
    end of the fit); until then the gradients of every step from the bad one on are zeroed on
    the device before the optimizer runs (and before gradient clipping), so the weights stay
    finite. Under mixed precision with a gradient scaler the scaler already skips steps with
    non-finite gradients, so only the loss is checked.

    A step after a failed device-side gather check (ranks that sent another layout, see
    :func:`quaterion.distributed.failed_gather_flag`) has its gradients zeroed the same way,
    with ``check_finite_loss = False`` too, until that gather's error is raised.

    Under DDP the loss verdicts of all ranks are combined in one small ``all_reduce`` per step
    (queued on the device under NCCL), so every rank raises the same error at the same step
    and zeroes the shared gradients alike; the gradients are all-reduced by DDP already, so
    every rank takes the same gradient verdict. Deferred verdicts are then read by age (once
    two newer ones are queued behind them), the same step on every rank.

    Validation and test losses are checked on the device per batch and read once, when the
    loop ends: a non-finite one raises :class:`NonFiniteValidationError` naming the batch. An
    attached metric whose epoch value is not finite (undefined on every batch) warns once.

    Args:
        asynchronous: force (``True``) or forbid (``False``) the deferred check; ``None``
            (default) defers on CUDA only.
    """

    def __init__(self, asynchronous: Optional[bool] = None):
        self.asynchronous = asynchronous
        self._all_finite: Optional[Tensor] = None  # device flag, sticky until raised
        self._pending: List[_Verdict] = []
        self._epoch_batches = 0
        self._batch_idx = 0
        self._names: Dict[int, str] = {}
        self._module: Optional[pl.LightningModule] = None
        self._seq = 0  # backward passes checked so far
        self._eval: Optional[Tuple[Tensor, Tensor, Tensor]] = None  # first bad batch, loss, count
        self._warned: set = set()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._all_finite, self._pending = None, []
        distributed.reset_gathers()  # nothing queued by an earlier run that failed
        self._names = {id(param): name for name, param in pl_module.named_parameters()}
        self._module = pl_module
        self._warned = set()

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
        # the last steps' gathers are checked here (their verdicts had no later call)
        distributed.raise_pending_gather_errors()
        self._raise_resolved(wait=True)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._all_finite, self._pending, self._eval = None, [], None

    def _deferred(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.asynchronous is None else self.asynchronous

    def _where(self, trainer: pl.Trainer) -> str:
        return (
            f"epoch {trainer.current_epoch}, step {trainer.global_step} (batch {self._batch_idx})"
        )

    @override
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        if not getattr(pl_module, "check_finite_loss", True) or not isinstance(loss, Tensor):
            return
        loss = loss.detach()
        self._seq += 1
        finite = torch.isfinite(loss).all()
        # a sum keeps a NaN/inf of any element (and is the value of a scalar loss)
        record = torch.stack([finite.to(torch.float32), loss.float().sum()])
        record = _across_ranks(record)  # [finite on every rank, value, rank of the value]
        if not self._deferred(loss.device):
            if record[0].item() == 0:
                distributed.raise_pending_gather_errors()  # the cause, if it was a gather
                raise _loss_error(record, self._where(trainer), pl_module)
            return
        finite = record[0] > 0
        self._all_finite = finite if self._all_finite is None else self._all_finite & finite
        self._defer("loss", record, trainer, [])

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        keep = self._all_finite
        checked = getattr(pl_module, "check_finite_loss", True)
        # a GradScaler already skips steps with non-finite (unscaled) gradients
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if checked and not scaled and params:
            device = params[0].grad.device
            flags = torch.stack([torch.isfinite(_gradient(p)).all().to(device) for p in params])
            if not self._deferred(device):
                if not bool(flags.all()):
                    distributed.raise_pending_gather_errors()
                    names = self._param_names(params)
                    where = self._where(trainer)
                    raise _gradient_error(flags.tolist(), names, where, pl_module)
            else:
                finite = flags.all()
                keep = finite if keep is None else keep & finite
                self._all_finite = keep
                names = self._param_names(params)
                self._defer("gradient", flags.to(torch.float32), trainer, names)
        failed = distributed.failed_gather_flag()
        if failed is not None and params:
            # a failed gather's NaN outputs, or its integer ones, are never applied, with the
            # finite checks off too; the error itself is raised a few calls later
            fine = ~failed.to(params[0].grad.device)
            keep = fine if keep is None else keep & fine
        if keep is None:
            return
        for param in params:
            # masked_fill, not a product: 0 * NaN is NaN
            _gradient(param).masked_fill_(~keep.to(param.grad.device), 0)

    def _param_names(self, params: List[Tensor]) -> List[str]:
        return [
            self._names.get(id(p), f"parameter {i} of the optimizer") for i, p in enumerate(params)
        ]

    def _defer(self, kind: str, record: Tensor, trainer: pl.Trainer, names: List[str]) -> None:
        event = None
        if record.device.type == "cuda":
            record = record.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        verdict = _Verdict(kind, record, event, self._where(trainer), names, self._seq)
        self._pending.append(verdict)

    def _raise_resolved(self, wait: bool) -> None:
        # Under DDP every rank must raise at the same step (a rank left behind would wait in
        # the next collective), so verdicts are read by age, not as soon as they are ready.
        by_age = distributed.world_size() > 1
        while self._pending:
            verdict = self._pending[0]
            if verdict.event is not None:
                if wait or (by_age and self._seq - verdict.seq >= _DDP_VERDICT_LAG):
                    verdict.event.synchronize()
                elif by_age or not verdict.event.query():
                    return
            self._pending.pop(0)
            where = verdict.where
            bad_loss = verdict.kind == "loss" and verdict.record[0].item() == 0
            bad_gradient = verdict.kind == "gradient" and not bool(verdict.record.all())
            if bad_loss or bad_gradient:
                self._pending = []
                # a gather whose ranks sent different row counts poisons its outputs with
                # NaN: report that cause rather than the NaN (every rank raises alike)
                distributed.raise_pending_gather_errors()
            if bad_loss:
                raise _loss_error(verdict.record, where, self._module, deferred=True)
            if bad_gradient:
                flags = verdict.record.tolist()
                raise _gradient_error(flags, verdict.names, where, self._module, deferred=True)

    # --- validation and test ------------------------------------------------------------------

    def watch_loss(self, loss: Tensor, batch_idx: int) -> None:
        """Record whether a validation/test batch's loss is finite, on its device (no sync).

        ``TrainableModel`` calls it from its validation and test steps; the verdict is read
        when the loop ends (:meth:`on_validation_end`).
        """
        loss = loss.detach()
        bad = ~torch.isfinite(loss).all()
        if self._eval is None or self._eval[0].device != loss.device:
            first = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._eval = (first, torch.zeros((), device=loss.device), torch.zeros_like(first))
        first, value, count = self._eval
        take = bad & (first < 0)
        self._eval = (
            first.masked_fill(take, batch_idx),
            torch.where(take, loss.float().reshape(-1)[0], value),
            count + bad.long(),
        )

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval = None

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval = None

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_evaluation(trainer, pl_module, "validation")

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_evaluation(trainer, pl_module, "test")

    def _check_evaluation(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if not getattr(pl_module, "check_finite_loss", True):
            return
        state, self._eval = self._eval, None
        when = "the sanity check" if trainer.sanity_checking else f"epoch {trainer.current_epoch}"
        if state is not None:
            first, value, count = (t.item() for t in state)  # once per loop, not per batch
            if count:
                distributed.raise_pending_gather_errors()
                raise NonFiniteValidationError(
                    f"{stage.capitalize()} loss is {value} in batch {first} of the "
                    f"{stage} data ({count} non-finite batch(es) in {when}), "
                    f"{_weights_state(pl_module)}. Look for NaN/inf in those records, or for "
                    "an encoder that produces them (a zero vector divided by its norm). Set "
                    "check_finite_loss = False on the TrainableModel to go on regardless."
                )
        logged = trainer.callback_metrics.get(f"{stage}_loss")
        if logged is not None and not math.isfinite(float(logged)):
            if trainer.world_size > 1:
                cause = (
                    f"reduced over {trainer.world_size} processes, while every batch of this "
                    "rank was finite: another rank's batch was not (that rank names it)"
                )
            else:
                cause = (
                    "while no batch loss seen by TrainableModel's step was non-finite: an "
                    "overridden step logged it, or the epoch mean overflowed"
                )
            raise NonFiniteValidationError(
                f"{stage.capitalize()} loss is {float(logged)} in {when}, {cause}. Set "
                "check_finite_loss = False on the TrainableModel to go on regardless."
            )
        self._warn_metrics(trainer, pl_module, stage, when)

    def _warn_metrics(self, trainer: pl.Trainer, pl_module: Any, stage: str, when: str) -> None:
        for metric in getattr(pl_module, "attached_metrics", ()):
            key = f"{metric.name}_{stage}"
            logged = trainer.callback_metrics.get(key)
            if logged is None or key in self._warned or math.isfinite(float(logged)):
                continue
            self._warned.add(key)
            warnings.warn(
                f"Metric {key!r} is {float(logged)} in {when}: it was undefined on every "
                f"{stage} batch (no query had a relevant item in its batch, e.g. every group a "
                "singleton, or no positive pair), or the metric itself returned NaN/inf. A "
                "monitor on it (EarlyStopping, ModelCheckpoint) learns nothing; use a larger "
                "batch_size or data with several items per group. Warned once per fit.",
                UserWarning,
                stacklevel=2,
            )


def _gradient(param: Tensor) -> Tensor:
    """``param.grad`` as a strided tensor aliasing its values (a sparse COO gradient is
    coalesced first, as sparse optimizers do anyway)."""
    if param.grad.layout == torch.sparse_coo:
        param.grad = param.grad.coalesce()
    return param.grad if param.grad.layout == torch.strided else param.grad.values()


def watch_evaluation_loss(trainer: Optional[pl.Trainer], loss: Tensor, batch_idx: int) -> None:
    """Hand a validation/test batch's loss to every :class:`GuardCallback` of ``trainer``."""
    for callback in trainer.callbacks if trainer is not None else ():
        if isinstance(callback, GuardCallback):
            callback.watch_loss(loss, batch_idx)


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


def _weights_state(module: Optional[pl.LightningModule]) -> str:
    """Whether the weights are finite, read now (a sync, paid only on the way to an error)."""
    if module is None:
        return "and the weights were not checked"
    bad = [name for name, param in module.named_parameters() if not torch.isfinite(param).all()]
    if not bad:
        return "so the weights are still finite"
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return (
        f"but {bad[0]!r}{more} already holds NaN or inf: an earlier optimizer step made it "
        "so from finite gradients (an overflow: lower the learning rate), or it was loaded "
        "so; restore a good checkpoint"
    )


def _applied(deferred: bool, module: Optional[pl.LightningModule]) -> str:
    if deferred:
        done = "Its gradients and those of the steps after it were zeroed before the optimizer ran"
    else:
        done = "The optimizer did not apply it"
    return f"{done}, {_weights_state(module)}."


def _loss_error(
    record: Tensor, where: str, module: Optional[pl.LightningModule], deferred: bool = False
) -> NonFiniteLossError:
    """The error for a record of :func:`_across_ranks`."""
    _, value, rank = record.tolist()
    ranks = distributed.world_size()
    on_rank = f" on rank {int(rank)} of {ranks}" if ranks > 1 else ""
    return NonFiniteLossError(
        f"Training loss is {value}{on_rank} at {where}. {_applied(deferred, module)} {_FIX}"
    )


def _gradient_error(
    flags: List[float],
    names: List[str],
    where: str,
    module: Optional[pl.LightningModule],
    deferred: bool = False,
) -> NonFiniteGradientError:
    bad = [name for name, flag in zip(names, flags) if not flag]
    more = f" and {len(bad) - 1} more parameter(s)" if len(bad) > 1 else ""
    return NonFiniteGradientError(
        f"Gradient of {bad[0]!r}{more} is NaN or infinite at {where} while the training loss "
        f"was finite. {_applied(deferred, module)} "
        "Usual causes: an operation whose derivative is "
        "undefined at the value it got (x / x.norm() or sqrt at an all-zero record, log(0)); "
        "Trainer(detect_anomaly=True) names it. Guard that operation (add an epsilon, "
        "torch.nn.functional.normalize) or drop such records. Set check_finite_loss = False "
        "on the TrainableModel to train on regardless."
    )


def check_loss_output(loss_fn: Any, loss: Any) -> Tensor:
    """``loss`` if it is a one-element tensor, else a clear error naming ``loss_fn``'s class.

    Reads only host metadata (type, shape): no device sync.
    """
    name = type(loss_fn).__name__
    if not isinstance(loss, Tensor):
        raise TypeError(
            f"{name} returned {type(loss).__name__}, not a torch.Tensor: a loss's forward must "
            "return a scalar tensor that autograd can differentiate."
        )
    if loss.numel() != 1:
        raise ValueError(
            f"{name} returned a loss of shape {tuple(loss.shape)}; a loss must return a scalar "
            "(one-element) tensor. Reduce it in the loss's forward, e.g. with .mean() or .sum()."
        )
    return loss
