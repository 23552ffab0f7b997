"""Configuration of cross-batch memory."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Optional


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
