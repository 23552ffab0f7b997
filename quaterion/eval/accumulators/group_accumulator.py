"""Accumulator for group-labelled batches."""

from typing import Dict, List, Optional, Union

import torch
from torch import Tensor

from quaterion.eval.accumulators.accumulator import Accumulator, joined


class GroupAccumulator(Accumulator):
    """Stores ``embeddings: (B, d)`` and ``groups: int (B,)`` per batch."""

    def __init__(self):
        super().__init__()
        self._groups: List[Tensor] = []

    def update(
        self,
        embeddings: Tensor,
        groups: Tensor,
        device: Optional[Union[torch.device, str]] = None,
    ) -> None:
        """Detach both and move them to ``device`` (default: the embeddings' device).

        Raises:
            ValueError: ``embeddings`` is not ``(B, d)`` with the ``d`` of earlier batches,
                or ``groups`` is not a tensor of ``B`` ids.
        """
        self.check_embeddings(embeddings)
        if not isinstance(groups, Tensor) or groups.numel() != embeddings.shape[0]:
            got = f"{groups.numel()} ids" if isinstance(groups, Tensor) else type(groups).__name__
            raise ValueError(
                f"GroupAccumulator.update needs groups as a tensor of one id per embedding "
                f"({embeddings.shape[0]}), got {got}."
            )
        device = self.store_embeddings(embeddings, device)
        self._groups.append(groups.detach().to(device))

    @property
    def groups(self) -> Tensor:
        """int ``(N,)``: all group ids, or an empty ``torch.Tensor()``."""
        return joined(self._groups)

    @property
    def state(self) -> Dict[str, Tensor]:
        """``{"embeddings", "groups"}``."""
        return {"embeddings": self.embeddings, "groups": self.groups}

    def reset(self) -> None:
        """Drop every stored batch and clear ``filled``."""
        super().reset()
        self._groups = []
