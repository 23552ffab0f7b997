"""Accumulator for pair-labelled batches."""

from typing import Dict, List, Optional, Union

import torch
from torch import Tensor

from quaterion.eval.accumulators.accumulator import Accumulator, joined


class PairAccumulator(Accumulator):
    """Stores embeddings, pair scores, pair indices and subgroups per batch.

    ``pairs`` are batch-local on input and stored shifted by the number of embeddings
    accumulated before the batch, so they index the concatenated ``embeddings``.
    """

    def __init__(self):
        super().__init__()
        self._labels: List[Tensor] = []
        self._pairs: List[Tensor] = []
        self._subgroups: List[Tensor] = []
        self._accumulated_size = 0

    def update(
        self,
        embeddings: Tensor,
        labels: Tensor,
        pairs: Tensor,
        subgroups: Tensor,
        device: Optional[Union[torch.device, str]] = None,
    ) -> None:
        """Store a batch, detached and moved to ``device`` (default: the embeddings' device).

        Args:
            embeddings: float ``(2P, d)``; labels: ``(P,)``; pairs: int64 ``(P, 2)``,
            batch-local; subgroups: ``(2P,)``.

        Raises:
            ValueError: ``embeddings`` is not ``(2P, d)`` with the ``d`` of earlier batches.
        """
        self.check_embeddings(embeddings)
        device = self.store_embeddings(embeddings, device)
        self._labels.append(labels.detach().to(device))
        self._pairs.append(pairs.detach().to(device) + self._accumulated_size)
        self._subgroups.append(subgroups.detach().to(device))
        self._accumulated_size += embeddings.shape[0]

    @property
    def labels(self) -> Tensor:
        """float ``(P,)`` pair scores, or an empty ``torch.Tensor()``."""
        return joined(self._labels)

    @property
    def pairs(self) -> Tensor:
        """int64 ``(P, 2)`` indices into ``embeddings``, or an empty ``torch.LongTensor()``."""
        return joined(self._pairs, torch.LongTensor)

    @property
    def subgroups(self) -> Tensor:
        """float ``(2P,)``, or an empty ``torch.Tensor()``."""
        return joined(self._subgroups)

    @property
    def state(self) -> Dict[str, Tensor]:
        """``{"embeddings", "labels", "pairs", "subgroups"}`` (subgroups concatenated)."""
        return {
            "embeddings": self.embeddings,
            "labels": self.labels,
            "pairs": self.pairs,
            "subgroups": self.subgroups,
        }

    def reset(self) -> None:
        """Drop every stored batch, the index shift and ``filled``."""
        super().reset()
        self._labels = []
        self._pairs = []
        self._subgroups = []
        self._accumulated_size = 0
