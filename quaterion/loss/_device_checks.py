"""Value checks of a loss's device tensors: checked on the device, raised late.

``Quaterion.fit`` checks every batch on the CPU before moving it; a loss called directly
with device tensors checks them on the device instead, without a host sync, and reads the
verdict a few calls later (see :class:`quaterion.deferred_checks.DeferredChecks`). The bad
call's loss is multiplied by 0 (its inputs made valid first), so it adds no gradient.
"""

from typing import Callable, Tuple

import torch
from torch import Tensor

from quaterion.deferred_checks import LAG, DeferredChecks
from quaterion.loss._checks import RESCALE, score_message

__all__ = ["LAG", "DeferredChecks", "DeviceChecked", "device_check_needed", "scores_on_device"]


def device_check_needed(value: object) -> bool:
    """Whether ``value`` is a non-empty tensor off the CPU (its values are checked late)."""
    return isinstance(value, Tensor) and value.device.type != "cpu" and value.numel() > 0


class DeviceChecked:
    """Mixin of a loss (an ``nn.Module``) that checks values of device tensors late.

    :meth:`device_checks` holds the loss's queued verdicts; ``train()``/``eval()`` first
    reads every one still queued (switching modes ends an epoch) and raises a failed one.
    """

    def device_checks(self) -> DeferredChecks:
        """This loss's queued verdicts (made on first use)."""
        checks = getattr(self, "_device_checks", None)
        if checks is None:
            checks = DeferredChecks()
            self._device_checks = checks
        return checks

    def train(self, mode: bool = True):
        """``nn.Module.train``; first raises a failed check of a device call still queued."""
        self.device_checks().raise_all()
        return super().train(mode)


def scores_on_device(
    owner: str,
    labels: Tensor,
    bounds: Tuple[float, float],
    checks: DeferredChecks,
    error: Callable[[str], Exception] = ValueError,
    fix: str = RESCALE,
) -> Tuple[Tensor, Tensor]:
    """Pair scores of a device tensor, checked against ``bounds`` without a host sync.

    Raises a failed verdict of an earlier call, queues this call's (the first bad pair and
    its score), and returns ``(labels, 1 if valid else 0)``; on a bad call the labels are
    replaced by the lower bound, so that the caller's loss, multiplied by the flag, is 0
    with a zero (not NaN) gradient.
    """
    checks.raise_late()
    low, high = bounds
    flat = labels.reshape(-1)
    bad = ~((flat >= low) & (flat <= high))  # NaN compares False: caught here too
    position = bad.to(torch.int32).argmax()  # the first bad pair, if any
    valid = ~bad.any()
    score = flat.gather(0, position.reshape(1))[0]
    verdict = torch.stack([valid.double(), position.double(), score.double()])
    late = (
        f" of loss call {{call}} (checked on the device and read {LAG} calls later; that "
        "call's loss was zeroed)"
    )
    checks.record(
        verdict,
        lambda call, values: error(
            score_message(owner, low, high, int(values[1]), values[2], late.format(call=call), fix)
        ),
    )
    return labels.masked_fill(~valid, low), valid
