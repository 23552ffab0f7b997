"""Base class of every head: dropout, then the subclass's ``transform``."""

import os
from typing import Any, Optional

from torch import Tensor, nn

from quaterion_models.utils._files import load_state_dict, read_json_dict, save_torch, write_json
from quaterion_models.utils.checks import check_positive_int, check_probability
from quaterion_models.utils.errors import DamagedFileError


class EncoderHead(nn.Module):
    """Template head: ``forward(x) = transform(dropout(x))``.

    Args:
        input_embedding_size: ``D_in``, width of the concatenated encoder outputs (a positive
            int; ``None`` only for heads that infer it, like ``SequentialHead``).
        dropout: probability of the input dropout, in ``[0, 1)``; ``0.0`` uses ``nn.Identity``.
        **kwargs: accepted and ignored (lets configs of subclasses round-trip).

    Raises:
        TypeError / ValueError: an argument has the wrong type or is out of range; the
            message names the argument, the value and the fix.
    """

    def __init__(self, input_embedding_size: int, dropout: float = 0.0, **kwargs):
        super().__init__()
        owner = type(self).__name__
        if input_embedding_size is not None:
            input_embedding_size = check_positive_int(
                owner,
                "input_embedding_size",
                input_embedding_size,
                "pass the summed embedding_size of the encoders, e.g. "
                "SimilarityModel.get_encoders_output_size(encoders)",
            )
        dropout = check_probability(owner, "dropout", dropout)
        self.input_embedding_size = input_embedding_size
        self._dropout_prob = dropout
        self.dropout = nn.Dropout(p=dropout) if dropout > 0.0 else nn.Identity()

    @property
    def output_size(self) -> int:
        """``D_out``, width of the head's output."""
        raise NotImplementedError(
            f"{type(self).__name__}.output_size is not implemented: define the property"
        )

    def transform(self, input_vectors: Tensor) -> Tensor:
        """float ``(B, D_in)`` -> float ``(B, D_out)`` (implement in a subclass)."""
        raise NotImplementedError(
            f"{type(self).__name__}.transform is not implemented: implement transform(x)"
        )

    def forward(self, input_vectors: Tensor, meta: Optional[list[Any]] = None) -> Tensor:
        """``transform(dropout(input_vectors))``; ``meta`` is ignored here."""
        return self.transform(self.dropout(input_vectors))

    def get_config_dict(self) -> dict:
        """JSON-serialisable constructor kwargs that re-create this head."""
        return {"input_embedding_size": self.input_embedding_size, "dropout": self._dropout_prob}

    def save(self, output_path: str) -> None:
        """Write ``weights.bin`` (``torch.save(state_dict)``) and ``config.json`` atomically."""
        save_torch(self.state_dict(), os.path.join(output_path, "weights.bin"))
        write_json(os.path.join(output_path, "config.json"), self.get_config_dict())

    @classmethod
    def load(cls, input_path: str) -> "EncoderHead":
        """``cls(**config.json)`` then the weights, read with ``weights_only=True`` on CPU.

        Raises:
            FileNotFoundError: ``config.json`` or ``weights.bin`` is missing.
            UnsafeFileError: ``weights.bin`` is not a plain state dict (refused, nothing run).
            DamagedFileError: a file is truncated, not JSON / a state dict, or does not fit
                the head its config describes.
        """
        config_path = os.path.join(input_path, "config.json")
        config = read_json_dict(config_path, f"the {cls.__name__} config written by save()")
        try:
            head = cls(**config)
        except (TypeError, ValueError) as err:
            raise DamagedFileError(
                f"{config_path} is damaged or does not fit {cls.__name__}: {err}; save the "
                "model again"
            ) from err
        weights_path = os.path.join(input_path, "weights.bin")
        state = load_state_dict(weights_path)
        try:
            head.load_state_dict(state)
        except RuntimeError as err:
            raise DamagedFileError(
                f"{weights_path} does not fit the {cls.__name__} described by {config_path} "
                f"(damaged or mixed from two saves): {str(err).splitlines()[0]}; save the "
                "model again"
            ) from err
        return head
