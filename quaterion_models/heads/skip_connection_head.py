"""Gated residual linear layers."""

import torch
from torch import Tensor, nn

from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.utils.checks import check_positive_int, check_probability


class SkipConnectionHead(EncoderHead):
    """``n_layers`` gated residual blocks: ``x <- fc_i(skip_dropout(x)) * sigmoid(gates_i) + x``.

    Gates start at ``-4.0`` (sigmoid ~ 0.018), so the head starts close to the identity.
    ``(B, D_in) -> (B, D_in)``. State dict: ``gates_{i}``, ``fc_{i}.weight``, ``fc_{i}.bias``.

    Args:
        input_embedding_size: ``D_in``.
        dropout: input dropout of the base head.
        skip_dropout: dropout on the trainable branch only.
        n_layers: number of residual blocks.
    """

    def __init__(
        self,
        input_embedding_size: int,
        dropout: float = 0.0,
        skip_dropout: float = 0.0,
        n_layers: int = 1,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        skip_dropout = check_probability(type(self).__name__, "skip_dropout", skip_dropout)
        n_layers = check_positive_int(
            type(self).__name__, "n_layers", n_layers, "use n_layers=1 or more (EmptyHead for none)"
        )
        self._skip_dropout_prob = skip_dropout
        self._n_layers = n_layers
        self.skip_dropout = nn.Dropout(p=skip_dropout) if skip_dropout > 0.0 else nn.Identity()
        for index in range(n_layers):
            self.register_parameter(
                f"gates_{index}", nn.Parameter(torch.empty(input_embedding_size))
            )
            self.add_module(f"fc_{index}", nn.Linear(input_embedding_size, input_embedding_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set every gate back to ``-4.0`` (linear layers untouched)."""
        for index in range(self._n_layers):
            nn.init.constant_(getattr(self, f"gates_{index}"), -4.0)

    @property
    def output_size(self) -> int:
        """``D_in``."""
        return self.input_embedding_size

    def transform(self, input_vectors: Tensor) -> Tensor:
        """Apply the residual blocks in order."""
        x = input_vectors
        for index in range(self._n_layers):
            fc, gates = getattr(self, f"fc_{index}"), getattr(self, f"gates_{index}")
            x = fc(self.skip_dropout(x)) * torch.sigmoid(gates) + x
        return x

    def get_config_dict(self) -> dict:
        """Base config + ``skip_dropout`` and ``n_layers``."""
        return {
            **super().get_config_dict(),
            "skip_dropout": self._skip_dropout_prob,
            "n_layers": self._n_layers,
        }
