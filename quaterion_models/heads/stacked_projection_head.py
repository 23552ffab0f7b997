"""Stack of linear layers with activations in between."""

from itertools import pairwise

from torch import Tensor, nn

from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.modules.simple import ActivationFromFnName
from quaterion_models.utils.checks import check_positive_int


class StackedProjectionHead(EncoderHead):
    """``Linear(D_in, s0), act, Linear(s0, s1), act, ..., Linear(s_{n-2}, s_{n-1})``.

    No activation after the last layer. ``(B, D_in) -> (B, output_sizes[-1])``.
    State dict: linear layers at even indices, ``_stack.0.*``, ``_stack.2.*``, ...

    Args:
        input_embedding_size: ``D_in``.
        output_sizes: widths of the successive linear layers (at least one).
        activation_fn: name of a ``torch.nn.functional`` activation.
        dropout: input dropout.
    """

    def __init__(
        self,
        input_embedding_size: int,
        output_sizes: list[int],
        activation_fn: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        owner = type(self).__name__
        if isinstance(output_sizes, (str, bytes)) or not hasattr(output_sizes, "__iter__"):
            raise TypeError(
                f"{owner}: `output_sizes` must be a list of layer widths, got "
                f"{type(output_sizes).__name__} {output_sizes!r}; e.g. output_sizes=[256, 128]"
            )
        if not output_sizes:
            raise ValueError(
                f"{owner}: `output_sizes` must list at least one layer width, "
                f"got {output_sizes!r}; e.g. output_sizes=[256, 128]"
            )
        self._output_sizes = [
            check_positive_int(owner, f"output_sizes[{index}]", size, "layer widths are >= 1")
            for index, size in enumerate(output_sizes)
        ]
        self._activation_fn = activation_fn
        widths = [input_embedding_size, *self._output_sizes]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(pairwise(widths)):
            if index > 0:
                layers.append(ActivationFromFnName(activation_fn))
            layers.append(nn.Linear(width_in, width_out))
        self._stack = nn.Sequential(*layers)

    @property
    def output_size(self) -> int:
        """``output_sizes[-1]``."""
        return self._output_sizes[-1]

    def transform(self, input_vectors: Tensor) -> Tensor:
        """Apply the stack."""
        return self._stack(input_vectors)

    def get_config_dict(self) -> dict:
        """Base config + ``output_sizes`` and ``activation_fn``."""
        return {
            **super().get_config_dict(),
            "output_sizes": self._output_sizes,
            "activation_fn": self._activation_fn,
        }
