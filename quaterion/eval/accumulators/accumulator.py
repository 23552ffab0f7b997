"""Base accumulator: a list of embedding batches plus a ``filled`` flag."""

from typing import Dict, List

import torch
from torch import Tensor


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
        """float ``(N, d)``: all batches concatenated, or an empty ``torch.Tensor()``."""
        return torch.cat(self._embeddings) if self._embeddings else torch.Tensor()

    def update(self, **kwargs) -> None:
        """Store one batch."""
        raise NotImplementedError()

    def reset(self) -> None:
        """Drop every stored batch and clear ``filled``."""
        self._embeddings = []
        self._filled = False
