"""Shared shell of the group losses that learn one parameter row/column per class."""

from typing import Any, Callable, ClassVar, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor, nn

from quaterion.utils.utils import l2_norm
from quaterion.loss._checks import check_groups, check_positive_int, host_check_needed, mark_checked
from quaterion.loss._device_checks import LAG, DeferredChecks, DeviceChecked, device_check_needed
from quaterion.loss._valid_rows import real_mean
from quaterion.loss.group_loss import GroupLoss


def check_group_ids(owner: str, groups: Tensor, num_groups: int, mark: bool = False) -> None:
    """Raise ``AssertionError`` (upstream's error type) if a class id of a CPU ``groups``
    tensor is outside ``[0, num_groups)``.

    Read on CPU tensors only (see ``host_check_needed``): ``Quaterion.fit`` checks each batch
    before moving it to the device (``mark=True``: the loss does not read that tensor
    again); ids on a device are not read, which would make the host wait.
    """
    check = f"group ids below {num_groups}"
    if not host_check_needed(groups, check):
        return
    if not bool(((groups >= 0) & (groups < num_groups)).all()):
        raise _invalid_ids(owner, num_groups, int(groups.min()), int(groups.max()))
    if mark:
        mark_checked(groups, check)


def _invalid_ids(
    owner: str, num_groups: int, low: int, high: int, late: str = ""
) -> AssertionError:
    return AssertionError(
        f"Invalid group ids for {owner}{late}: every id must be in [0, num_groups={num_groups}), "
        f"got min {low}, max {high}. Remap the group ids or raise num_groups."
    )


def checked_on_device(
    owner: str, groups: Tensor, num_groups: int, checks: DeferredChecks
) -> Tuple[Tensor, Tensor]:
    """Class ids of a device tensor, checked without a host sync.

    Raises a failed verdict of an earlier call (see :class:`DeferredChecks`), queues this
    call's, and returns ``(ids clamped into [0, num_groups), 1 if valid else 0)``: the
    clamped ids never index out of bounds (on CUDA that would be a device-side assert that
    ends the process), and the caller multiplies its loss by the flag, so a batch with
    invalid ids contributes no gradient while its error is on its way to the host.
    """
    checks.raise_late()
    low, high = groups.min(), groups.max()
    valid = ((low >= 0) & (high < num_groups)).to(torch.int64)
    checks.record(
        torch.stack([valid, low.to(torch.int64), high.to(torch.int64)]),
        lambda call, values: _invalid_ids(
            owner,
            num_groups,
            values[1],
            values[2],
            f" in loss call {call} (checked on the "
            f"device and read {LAG} calls later; that call's loss was zeroed)",
        ),
    )
    return groups.clamp(0, num_groups - 1), valid


def class_kernel(embedding_size: int, num_groups: int) -> nn.Parameter:
    """Learned classifier weights ``(embedding_size, num_groups)``, one column per class,
    drawn from ``normal(0, 0.01)``."""
    kernel = nn.Parameter(torch.empty(embedding_size, num_groups))
    nn.init.normal_(kernel, mean=0.0, std=0.01)
    return kernel


def promoted(embeddings: Tensor, weights: Tensor) -> Tuple[Tensor, Tensor]:
    """``embeddings`` and the learned ``weights`` in their promoted dtype (differentiable
    casts): float64 embeddings with float32 weights compute in float64, float16/bfloat16
    embeddings in float32 (as autocast computes a loss), so a direct call in another dtype
    than the loss's parameters works."""
    dtype = torch.promote_types(embeddings.dtype, weights.dtype)
    return embeddings.to(dtype), weights.to(dtype)


def cosine_margin_loss(
    embeddings: Tensor,
    kernel: Tensor,
    groups: Tensor,
    scale: float,
    target_logit: Callable[[Tensor], Tensor],
    eps: float = 0.0,
    valid: Optional[Tensor] = None,
) -> Tensor:
    """Cross-entropy of scaled cosine logits whose target column carries a margin.

    ``c_ij = <Ê_i, Ŵ_j>`` (``Ê = normalize(E, dim=1)``, ``Ŵ = normalize(W, dim=0)``) clamped
    to ``[-1 + eps, 1 - eps]``; ``z = c`` except ``z_{i, y_i} = target_logit(c_{i, y_i})``
    (written out of place); ``loss = CE(scale · z, y)`` (mean).

    Args:
        embeddings: float ``(B, d)``.
        kernel: float ``(d, C)``; column ``j`` is the weight of class ``j``.
        groups: int64 ``(B,)`` class ids ``y`` in ``[0, C)`` (not checked here).
        scale: ``s``.
        target_logit: maps the target cosines ``(B, 1)`` to their logits.
        eps: keeps the cosines off ``±1`` (for an ``arccos`` in ``target_logit``).
        valid: bool ``(B,)`` real rows (``None``: all); the mean runs over them only
            (padded rows of :func:`~quaterion.distributed.gather_rows_padded`).

    Returns:
        0-dim float.
    """
    embeddings, kernel = promoted(embeddings, kernel)
    cos = l2_norm(embeddings, dim=1) @ l2_norm(kernel, dim=0)
    cos = cos.clamp(-1.0 + eps, 1.0 - eps)
    target = groups.unsqueeze(1)
    logits = cos.scatter(1, target, target_logit(cos.gather(1, target)))
    return real_cross_entropy(scale * logits, groups, valid)


def real_cross_entropy(logits: Tensor, groups: Tensor, valid: Optional[Tensor]) -> Tensor:
    """``F.cross_entropy(logits, groups)`` (mean) over the real rows only; 0 without rows."""
    if valid is None and logits.shape[0] > 0:
        return F.cross_entropy(logits, groups)
    return real_mean(F.cross_entropy(logits, groups, reduction="none"), valid)


class ClassifierGroupLoss(DeviceChecked, GroupLoss):
    """Base of ``SoftmaxLoss``, ``ArcFaceLoss``, ``CosFaceLoss`` and ``CenterLoss``.

    Validates ``embedding_size`` / ``num_groups``, builds ``get_config_dict`` from them plus
    the subclass's ``hyperparameters``, and checks group ids before calling ``_loss``.
    Subclasses create their learned parameter and implement ``_loss``.
    """

    hyperparameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, embedding_size: int, num_groups: int, gather_across_ranks: bool = False):
        super().__init__(gather_across_ranks=gather_across_ranks)
        name = type(self).__name__
        self.embedding_size = check_positive_int(name, "embedding_size", embedding_size)
        self.num_groups = check_positive_int(name, "num_groups", num_groups)

    def get_config_dict(self) -> dict[str, Any]:
        """Base config plus ``embedding_size``, ``num_groups`` and the hyperparameters."""
        config = {
            **super().get_config_dict(),
            "embedding_size": self.embedding_size,
            "num_groups": self.num_groups,
        }
        config.update({key: getattr(self, key) for key in self.hyperparameters})
        return config

    def check_batch_targets(self, targets: dict) -> None:
        """Check the batch's class ids (``targets["groups"]``, CPU) against ``num_groups``;
        ``AssertionError`` (upstream's error type) names the bad ids."""
        groups = targets.get("groups")
        if isinstance(groups, Tensor) and groups.dim() == 1 and not groups.is_floating_point():
            if groups.dtype != torch.bool:
                check_group_ids(type(self).__name__, groups, self.num_groups, mark=True)

    def forward(self, embeddings: Tensor, groups: LongTensor) -> Tensor:
        """Loss of ``embeddings: float (B, d)`` with class ids ``groups: int64 (B,)``; 0-dim.

        Raises:
            TypeError: ``groups`` is not an integer tensor.
            ValueError: shapes are not ``(B, d)`` and ``(B,)``.
            AssertionError: a group id is outside ``[0, num_groups)``: at once for CPU
                ``groups``; for ``groups`` on a device (checked there, no host sync), at the
                start of the call two calls later or at the next ``train()``/``eval()``,
                whichever comes first, and the bad call's loss is multiplied by 0 (its ids
                clamped into range, so nothing indexes out of bounds).
        """
        check_groups(embeddings, groups)
        groups = groups.long()  # int32 ids fail in cross_entropy, uint8 ones index as a mask
        if not device_check_needed(groups):
            check_group_ids(type(self).__name__, groups, self.num_groups)
            return self._gathered_loss(embeddings, groups)
        groups, valid = checked_on_device(
            type(self).__name__, groups, self.num_groups, self.device_checks()
        )
        return self._gathered_loss(embeddings, groups) * valid.to(embeddings.dtype)

    def _gathered_loss(self, embeddings: Tensor, groups: Tensor) -> Tensor:
        """``_loss`` over every rank's rows (with ``gather_across_ranks``), padded rows left
        out of the mean."""
        embeddings, groups, valid = self.gather_padded(embeddings, groups)
        if valid is None:
            return self._loss(embeddings, groups)
        return self._loss(embeddings, groups, valid=valid)

    def _loss(self, embeddings: Tensor, groups: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        """Mean loss of the rows (those marked by ``valid`` only, when given)."""
        raise NotImplementedError
