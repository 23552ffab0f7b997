"""Value checks of a loss's device tensors: checked on the device, raised late.

``Quaterion.fit`` checks every batch on the CPU before moving it; a loss called directly
with device tensors checks them on the device instead and reads the verdict a few calls
later (see :class:`quaterion._deferred_checks.DeferredChecks`).
"""

from torch import Tensor

from quaterion._deferred_checks import LAG, DeferredChecks

__all__ = ["LAG", "DeferredChecks", "device_check_needed"]


def device_check_needed(value: object) -> bool:
    """Whether ``value`` is a non-empty tensor off the CPU (its values are checked late)."""
    return isinstance(value, Tensor) and value.device.type != "cpu" and value.numel() > 0
