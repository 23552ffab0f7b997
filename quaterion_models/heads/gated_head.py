"""Per-component gate on the embedding."""

import torch
from torch import Tensor, nn

from quaterion_models.heads.encoder_head import EncoderHead


class GatedHead(EncoderHead):
    """``y = x * tanh(gates)``, gates float ``(D_in,)`` initialised to ``2.0`` (gate ~ 0.964).

    Learns to switch embedding components off. ``(B, D_in) -> (B, D_in)``.
    State dict: ``gates``.
    """

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)
        self.gates = nn.Parameter(torch.empty(input_embedding_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set every gate back to ``2.0``."""
        nn.init.constant_(self.gates, 2.0)

    @property
    def output_size(self) -> int:
        """``D_in``."""
        return self.input_embedding_size

    def transform(self, input_vectors: Tensor) -> Tensor:
        """``x * tanh(gates)``, broadcast over the last dimension.

        Raises:
            RuntimeError: ``input_vectors`` has another dtype than the gates (outside
                ``torch.autocast``), as a linear layer does, instead of silently promoting.
        """
        gates = self.gates
        if input_vectors.dtype != gates.dtype and not torch.is_autocast_enabled(
            input_vectors.device.type
        ):
            raise RuntimeError(
                f"GatedHead got {input_vectors.dtype} input but its gates are {gates.dtype}; "
                "input and parameters must have the same dtype: convert the head (or the "
                f"model) with .to({input_vectors.dtype}) or the input with .to({gates.dtype})"
            )
        return input_vectors * torch.tanh(gates)
