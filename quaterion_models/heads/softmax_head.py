"""Grouped softmax projection."""

from torch import Tensor, nn

from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.utils.checks import check_positive_int


class SoftmaxEmbeddingsHead(EncoderHead):
    """Linear projection to ``groups * per_group`` values, softmax inside each group.

    Output float ``(..., output_groups * output_size_per_group)``; each consecutive block of
    ``output_size_per_group`` values sums to 1. State dict: ``projection_layer.*``.

    Args:
        output_groups: number of softmax groups.
        output_size_per_group: width of each group.
        input_embedding_size: ``D_in``.
        dropout: input dropout.
    """

    def __init__(
        self,
        output_groups: int,
        output_size_per_group: int,
        input_embedding_size: int,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        owner = type(self).__name__
        self.output_groups = check_positive_int(
            owner, "output_groups", output_groups, "use at least one softmax group"
        )
        self.output_size_per_group = check_positive_int(
            owner, "output_size_per_group", output_size_per_group, "use e.g. 10"
        )
        self.projection_layer = nn.Linear(
            input_embedding_size, output_groups * output_size_per_group
        )

    @property
    def output_size(self) -> int:
        """``output_groups * output_size_per_group``."""
        return self.output_groups * self.output_size_per_group

    def transform(self, input_vectors: Tensor) -> Tensor:
        """Project, softmax over each group's values, keep the projection's shape."""
        projected = self.projection_layer(input_vectors)
        grouped = projected.view(
            *projected.shape[:-1], self.output_groups, self.output_size_per_group
        )
        return grouped.softmax(dim=-1).view(projected.shape)

    def get_config_dict(self) -> dict:
        """Base config + ``output_groups`` and ``output_size_per_group``."""
        return {
            **super().get_config_dict(),
            "output_groups": self.output_groups,
            "output_size_per_group": self.output_size_per_group,
        }
