"""Configuration of cross-batch memory."""

import math
import numbers
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Optional


class XbmDevice(StrEnum):
    """Where the XBM buffer lives; formats, prints and compares as its value.

    ``AUTO`` means CUDA if available, else CPU. The buffer follows the embeddings' device on
    first use regardless, so a CPU trainer on a CUDA host never mixes devices.
    """

    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"


@dataclass
class XbmConfig:
    """Cross-batch memory settings.

    Args:
        weight: factor applied to the memory loss before it is added to the batch loss.
        buffer_size: rows kept in the ring buffer.
        start_iteration: XBM runs only while ``trainer.global_step > start_iteration``.
        device: where the buffer is allocated (it moves to the embeddings' device on use).
    """

    weight: Optional[float] = 1.0
    buffer_size: Optional[int] = 10000
    start_iteration: Optional[int] = 1000
    device: Optional[XbmDevice] = XbmDevice.AUTO


def check_xbm_config(config: XbmConfig) -> None:
    """Raise a clear error for settings that would fail or train wrongly later (the memory
    term starts only after ``start_iteration`` steps, where a bad value would surface late).

    Raises:
        TypeError: ``buffer_size`` or ``start_iteration`` is not an int, ``weight`` is not
            a real number (``None`` and ``bool`` included).
        ValueError: ``buffer_size`` is not positive, ``weight`` is not finite, or
            ``device`` is not one of ``XbmDevice``'s values.
    """
    _require_int("buffer_size", config.buffer_size, "the number of rows kept, e.g. 10000")
    if config.buffer_size <= 0:
        raise ValueError(
            f"XbmConfig.buffer_size must be a positive int, got {config.buffer_size!r}; pass "
            "the number of rows kept, e.g. 10000"
        )
    _require_int("start_iteration", config.start_iteration, "a step number, e.g. 1000 or 0")
    weight = config.weight
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(
            f"XbmConfig.weight must be a real number, got {type(weight).__name__} {weight!r}; "
            "pass the factor of the memory term, e.g. 1.0"
        )
    if not math.isfinite(weight):
        raise ValueError(f"XbmConfig.weight must be finite, got {weight!r}")
    device = config.device
    if device is not None and str(device) not in {member.value for member in XbmDevice}:
        raise ValueError(
            f"XbmConfig.device must be one of {[member.value for member in XbmDevice]} (an "
            f"XbmDevice), got {device!r}; the memory follows the embeddings' device anyway"
        )


def _require_int(name: str, value: Any, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"XbmConfig.{name} must be an int, got {type(value).__name__} {value!r}; pass {example}"
        )
