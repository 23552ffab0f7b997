"""Ring buffer of past embeddings and their group labels (cross-batch memory)."""

from typing import Any, Dict, Optional, Tuple

import torch
from torch import LongTensor, Tensor

from quaterion.train.xbm.xbm_config import XbmConfig, XbmDevice, check_xbm_config


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

    A batch gathered across ranks with padding (see
    :func:`quaterion.distributed.gather_rows_padded`) is queued with its ``valid`` mask:
    its padded rows take their slots (the pointer moves on the host without reading the
    mask) but :meth:`valid_rows` marks them, and the memory loss leaves them out.

    Args:
        config: XBM settings; ``buffer_size`` is the capacity ``N``.
        embedding_size: width ``d`` of the stored embeddings.

    Raises:
        TypeError, ValueError: invalid settings (see
            :func:`~quaterion.train.xbm.xbm_config.check_xbm_config`).
    """

    def __init__(self, config: XbmConfig, embedding_size: int):
        check_xbm_config(config)
        size = int(config.buffer_size)
        device = _resolve_device(config.device)
        self.embeddings = torch.zeros(size, embedding_size, dtype=torch.float32, device=device)
        self.targets = torch.zeros(size, dtype=torch.long, device=device)
        self.valid = torch.ones(size, dtype=torch.bool, device=device)
        self.p = 0
        self._is_full = False
        self._padded = False  # a mask was ever queued

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
            self.valid = self.valid.to(device)
        return self

    def get(self) -> Tuple[Tensor, LongTensor]:
        """Clones of the filled rows: all ``N`` if full, else rows ``[0, p)``."""
        if self._is_full:
            return self.embeddings.clone(), self.targets.clone()
        return self.embeddings[: self.p].clone(), self.targets[: self.p].clone()

    def valid_rows(self) -> Optional[Tensor]:
        """Which rows of :meth:`get` are real (bool, on the buffer's device), or ``None``
        when no padded batch was ever queued (every row is real)."""
        if not self._padded:
            return None
        return self.valid.clone() if self._is_full else self.valid[: self.p].clone()

    def queue(
        self, embeddings: Tensor, targets: LongTensor, valid: Optional[Tensor] = None
    ) -> None:
        """Append a batch ``(b, d)`` / ``(b,)``, overwriting the oldest rows when full.

        A batch larger than the buffer keeps only its last ``N`` items. ``valid``: bool
        ``(b,)``, the batch's real rows when it was gathered with padding (``None``: all).
        """
        size, width = self.embeddings.shape
        rows = embeddings.shape[:1]
        if embeddings.dim() != 2 or embeddings.shape[1] != width or targets.shape != rows:
            raise ValueError(
                f"XBM memory rows are {width} wide (the head's output_size), one target "
                f"each; got embeddings {tuple(embeddings.shape)} and targets "
                f"{tuple(targets.shape)}. Make the head's output_size match its output."
            )
        self.to(embeddings.device)
        embeddings = embeddings.detach()
        targets = targets.detach()
        if valid is None:
            valid = torch.ones(embeddings.shape[0], dtype=torch.bool, device=self.device)
        else:
            self._padded = True
        if embeddings.shape[0] > size:
            embeddings, targets, valid = embeddings[-size:], targets[-size:], valid[-size:]
        b = embeddings.shape[0]
        end = self.p + b
        if end < size:
            self._write(slice(self.p, end), embeddings, targets, valid)
            self.p = end
        elif end == size:
            self._write(slice(size - b, size), embeddings, targets, valid)
            self.p = 0
            self._is_full = True
        else:
            extra = end - size
            self._write(slice(self.p, size), embeddings[extra:], targets[extra:], valid[extra:])
            self._write(slice(0, extra), embeddings[:extra], targets[:extra], valid[:extra])
            self.p = extra
            self._is_full = True

    def state_dict(self) -> Dict[str, Any]:
        """The memory as plain data on the CPU (tensors, ints and bools: a weights-only
        ``torch.load`` reads it), for a checkpoint; see :meth:`load_state_dict`."""
        return {
            "embeddings": self.embeddings.detach().cpu().clone(),
            "targets": self.targets.detach().cpu().clone(),
            "valid": self.valid.detach().cpu().clone(),
            "p": self.p,
            "is_full": self._is_full,
            "padded": self._padded,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Put back a memory saved by :meth:`state_dict` (its rows, targets, masks and write
        position), on this buffer's device.

        Raises:
            ValueError: the saved memory has another ``buffer_size`` or width than this one.
        """
        saved, here = tuple(state["embeddings"].shape), tuple(self.embeddings.shape)
        if saved != here:
            raise ValueError(
                f"the saved cross-batch memory holds {saved[0]} rows {saved[1]} wide, this "
                f"one {here[0]} rows {here[1]} wide (XbmConfig.buffer_size, head output size)"
            )
        device = self.device
        self.embeddings = state["embeddings"].to(device, torch.float32).clone()
        self.targets = state["targets"].to(device, torch.long).clone()
        self.valid = state["valid"].to(device, torch.bool).clone()
        self.p = int(state["p"])
        self._is_full = bool(state["is_full"])
        self._padded = bool(state["padded"])

    def _write(self, rows: slice, embeddings: Tensor, targets: Tensor, valid: Tensor) -> None:
        self.embeddings[rows] = embeddings
        self.targets[rows] = targets
        self.valid[rows] = valid
