"""Ring buffer of past embeddings and their group labels (cross-batch memory)."""

from typing import Tuple

import torch
from torch import LongTensor, Tensor

from quaterion.train.xbm.xbm_config import XbmConfig, XbmDevice


def _resolve_device(device) -> torch.device:
    """Map an ``XbmDevice`` (or plain device string) to a ``torch.device``."""
    if device is None or XbmDevice(str(device)) == XbmDevice.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(str(device))


class XbmBuffer:
    """Fixed-size FIFO memory of embeddings ``float32 (N, d)`` and targets ``int64 (N,)``.

    The tensors are allocated on the configured device and move, once, to the device of the
    first batch queued or read with :meth:`to`, so the buffer always lives on the model's
    device.

    Args:
        config: XBM settings; ``buffer_size`` is the capacity ``N``.
        embedding_size: width ``d`` of the stored embeddings.
    """

    def __init__(self, config: XbmConfig, embedding_size: int):
        size = int(config.buffer_size)
        if size <= 0:
            raise ValueError(
                f"XbmConfig.buffer_size must be a positive int, got {config.buffer_size!r}"
            )
        device = _resolve_device(config.device)
        self.embeddings = torch.zeros(size, embedding_size, dtype=torch.float32, device=device)
        self.targets = torch.zeros(size, dtype=torch.long, device=device)
        self.p = 0
        self._is_full = False

    @property
    def is_full(self) -> bool:
        """Whether the buffer has wrapped around at least once."""
        return self._is_full

    @property
    def device(self) -> torch.device:
        """Device of the stored tensors."""
        return self.embeddings.device

    def to(self, device) -> "XbmBuffer":
        """Move the stored tensors to ``device`` (no-op when already there)."""
        device = torch.device(device)
        if self.embeddings.device != device:
            self.embeddings = self.embeddings.to(device)
            self.targets = self.targets.to(device)
        return self

    def get(self) -> Tuple[Tensor, LongTensor]:
        """Clones of the filled rows: all ``N`` if full, else rows ``[0, p)``."""
        if self._is_full:
            return self.embeddings.clone(), self.targets.clone()
        return self.embeddings[: self.p].clone(), self.targets[: self.p].clone()

    def queue(self, embeddings: Tensor, targets: LongTensor) -> None:
        """Append a batch ``(b, d)`` / ``(b,)``, overwriting the oldest rows when full.

        A batch larger than the buffer keeps only its last ``N`` items.
        """
        size = self.embeddings.shape[0]
        self.to(embeddings.device)
        embeddings = embeddings.detach()
        targets = targets.detach()
        if embeddings.shape[0] > size:
            embeddings, targets = embeddings[-size:], targets[-size:]
        b = embeddings.shape[0]
        end = self.p + b
        if end < size:
            self.embeddings[self.p : end] = embeddings
            self.targets[self.p : end] = targets
            self.p = end
        elif end == size:
            self.embeddings[size - b :] = embeddings
            self.targets[size - b :] = targets
            self.p = 0
            self._is_full = True
        else:
            extra = end - size
            self.embeddings[self.p :] = embeddings[extra:]
            self.targets[self.p :] = targets[extra:]
            self.embeddings[:extra] = embeddings[:extra]
            self.targets[:extra] = targets[:extra]
            self.p = extra
            self._is_full = True
