"""Configuration of cross-batch memory."""

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class XbmDevice(str, Enum):
    """Where the XBM buffer lives; formats, prints and compares as its value.

    ``AUTO`` means CUDA if available, else CPU. The buffer follows the embeddings' device on
    first use regardless, so a CPU trainer on a CUDA host never mixes devices.
    """

    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)


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
