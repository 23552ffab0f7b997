"""Accumulator for pair-labelled batches."""

from typing import Dict, List, Optional, Tuple, Union

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
        # (first row, rows, pairs) of each update batch, for check_local_pairs
        self._batches: List[Tuple[int, int, int]] = []

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
            ValueError: ``embeddings`` is not ``(2P, d)`` with the ``d`` of earlier batches,
                or ``pairs``/``labels`` are not ``(P, 2)``/``(P,)``.
            TypeError: ``labels``, ``pairs`` or ``subgroups`` is not a tensor.
        """
        self.check_embeddings(embeddings)
        if not all(isinstance(value, Tensor) for value in (labels, pairs, subgroups)):
            raise TypeError("PairAccumulator.update needs labels, pairs and subgroups as tensors.")
        if pairs.numel() % 2 or labels.numel() != pairs.numel() // 2:
            raise ValueError(
                f"PairAccumulator.update needs pairs of shape (P, 2) and one score per pair, got "
                f"pairs {tuple(pairs.shape)} and {labels.numel()} labels."
            )
        device = self.store_embeddings(embeddings, device)
        self._labels.append(labels.detach().to(device))
        self._pairs.append(pairs.detach().to(device) + self._accumulated_size)
        self._subgroups.append(subgroups.detach().to(device))
        self._batches.append((self._accumulated_size, embeddings.shape[0], pairs.numel() // 2))
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
        """``{"embeddings", "labels", "pairs", "subgroups"}`` (subgroups concatenated).

        Raises:
            ValueError: a batch's pairs indexed outside that batch (``update`` takes
                batch-local indices; reads the pairs on the host).
        """
        self.check_local_pairs()
        return {
            "embeddings": self.embeddings,
            "labels": self.labels,
            "pairs": self.pairs,
            "subgroups": self.subgroups,
        }

    def check_local_pairs(self) -> None:
        """``ValueError`` naming the first ``update`` batch whose pairs left the batch: after
        the shift they would silently pair objects of two different batches."""
        if not self._batches:
            return
        starts, sizes, counts = (torch.tensor(column) for column in zip(*self._batches))
        pairs = self.pairs.cpu().reshape(-1, 2)
        low = starts.repeat_interleave(counts)[:, None]
        high = low + sizes.repeat_interleave(counts)[:, None]
        outside = ((pairs < low) | (pairs >= high)).any(1)
        if bool(outside.any()):
            first = int(outside.nonzero()[0, 0])
            batch = int(torch.arange(len(self._batches)).repeat_interleave(counts)[first])
            local = (pairs[first] - low[first]).tolist()
            raise ValueError(
                f"update batch {batch} ({int(sizes[batch])} embeddings) has the pair {local}, "
                f"outside the batch: pairs given to update are batch-local indices "
                f"0..{int(sizes[batch]) - 1} (they are shifted past the earlier batches)."
            )

    def reset(self) -> None:
        """Drop every stored batch, the index shift and ``filled``."""
        super().reset()
        self._batches = []
        self._labels = []
        self._pairs = []
        self._subgroups = []
        self._accumulated_size = 0
