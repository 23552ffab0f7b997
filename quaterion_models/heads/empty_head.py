"""Identity head."""

from torch import Tensor

from quaterion_models.heads.encoder_head import EncoderHead


class EmptyHead(EncoderHead):
    """Returns the (dropped-out) input unchanged: ``(B, D_in) -> (B, D_in)``. No parameters."""

    def __init__(self, input_embedding_size: int, dropout: float = 0.0):
        super().__init__(input_embedding_size, dropout=dropout)

    @property
    def output_size(self) -> int:
        """``D_in``."""
        return self.input_embedding_size

    def transform(self, input_vectors: Tensor) -> Tensor:
        """Identity."""
        return input_vectors
