"""Two-layer bottleneck-inverse projection back to the input width."""

from quaterion_models.heads.stacked_projection_head import StackedProjectionHead
from quaterion_models.utils.checks import check_positive_float, check_positive_int


class WideningHead(StackedProjectionHead):
    """``Linear(D_in, int(D_in * expansion_factor)), act, Linear(.., D_in)``.

    ``(B, D_in) -> (B, D_in)``. State dict: ``_stack.0.*``, ``_stack.2.*``.

    Args:
        input_embedding_size: ``D_in``.
        expansion_factor: width multiplier of the hidden layer.
        activation_fn: name of a ``torch.nn.functional`` activation.
        dropout: input dropout.
        **kwargs: ignored (``output_sizes`` comes back from a saved config).
    """

    def __init__(
        self,
        input_embedding_size: int,
        expansion_factor: float = 4.0,
        activation_fn: str = "relu",
        dropout: float = 0.0,
        **kwargs,
    ):
        owner = type(self).__name__
        input_embedding_size = check_positive_int(
            owner, "input_embedding_size", input_embedding_size, "pass the encoders' width"
        )
        expansion_factor = check_positive_float(owner, "expansion_factor", expansion_factor)
        hidden = int(input_embedding_size * expansion_factor)
        if hidden < 1:
            raise ValueError(
                f"{owner}: hidden width int(input_embedding_size * expansion_factor) = "
                f"int({input_embedding_size} * {expansion_factor}) = {hidden}; raise "
                "`expansion_factor` so that the hidden layer has at least one unit"
            )
        super().__init__(
            input_embedding_size=input_embedding_size,
            output_sizes=[hidden, input_embedding_size],
            activation_fn=activation_fn,
            dropout=dropout,
        )
        self._expansion_factor = expansion_factor

    def get_config_dict(self) -> dict:
        """Parent config (with ``output_sizes``) + ``expansion_factor``."""
        return {**super().get_config_dict(), "expansion_factor": self._expansion_factor}
