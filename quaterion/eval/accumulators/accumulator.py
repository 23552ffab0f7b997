"""Base accumulator: a list of embedding batches plus a ``filled`` flag."""

from typing import Callable, Dict, List, Optional, Union

import torch
from torch import Tensor


def joined(parts: List[Tensor], empty: Callable[[], Tensor] = torch.Tensor) -> Tensor:
    """Every tensor of ``parts`` concatenated along dim 0 (``empty()`` for none).

    The list is replaced, in place, by the one concatenated tensor: the batches are copied
    once, later reads return that same tensor without copying, and memory holds one copy.
    Batches appended afterwards are joined to it on the next read. Callers must not modify
    the returned tensor in place (it is the stored state).
    """
    if not parts:
        return empty()
    if len(parts) > 1:
        parts[:] = [torch.cat(parts)]
    return parts[0]


class Accumulator:
    """Collects embedding batches; subclasses add their targets.

    Declared state (restored by :meth:`reset`): ``_embeddings: List[Tensor]``,
    ``_filled: bool``. Only samplers read ``filled``; ``update`` does not check it.
    """

    def __init__(self):
        self._embeddings: List[Tensor] = []
        self._filled = False

    @property
    def state(self) -> Dict[str, Tensor]:
        """Keyword arguments for the metric's ``compute``."""
        return {"embeddings": self.embeddings}

    @property
    def filled(self) -> bool:
        """Whether a sampler has finished accumulating a dataset."""
        return self._filled

    def set_filled(self) -> None:
        """Mark accumulation as finished."""
        self._filled = True

    @property
    def embeddings(self) -> Tensor:
        """float ``(N, d)``: all batches concatenated, or an empty ``torch.Tensor()``
        (concatenated once, then kept: see :func:`joined`)."""
        return joined(self._embeddings)

    def update(self, **kwargs) -> None:
        """Store one batch."""
        raise NotImplementedError()

    def check_embeddings(self, embeddings: Tensor) -> None:
        """Refuse a batch whose embeddings are not ``(B, d)`` with the ``d`` of the batches
        stored before (shapes only: no values are read, so nothing waits for a device).

        Subclasses call it before storing anything of a batch.

        Raises:
            ValueError: another width than the earlier batches, or not 2-D.
        """
        shape = tuple(embeddings.shape)
        width = self._embeddings[0].shape[1] if self._embeddings else None
        if len(shape) == 2 and width in (None, shape[1]):
            return
        wanted = "(batch, dim)" if width is None else f"(batch, {width}): the earlier batches"
        raise ValueError(
            f"{type(self).__name__}.update got embeddings of shape {shape}, expected {wanted}"
            + ("" if width is None else f" are {width} wide")
            + "; every batch of one evaluation must come from the same model (call reset() "
            "before evaluating another one)"
        )

    def store_embeddings(
        self, embeddings: Tensor, device: Optional[Union[torch.device, str]]
    ) -> torch.device:
        """Append ``embeddings`` detached and moved to ``device`` (default: theirs); return
        the device used. Call :meth:`check_embeddings` first."""
        device = embeddings.device if device is None else device
        self._embeddings.append(embeddings.detach().to(device))
        return device

    def reset(self) -> None:
        """Drop every stored batch and clear ``filled``."""
        self._embeddings = []
        self._filled = False
