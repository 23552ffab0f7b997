"""Base class of every head: dropout, then the subclass's ``transform``."""

import os
from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import Tensor, nn

from quaterion_models.utils.checks import check_positive_int, check_probability
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.errors import DamagedFileError
from quaterion_models.utils.files import load_state_dict, save_torch, write_json


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

        The head is first built on the ``meta`` device and its parameter shapes compared with
        ``weights.bin``, so a config describing a huge head never allocates memory.

        Raises:
            FileNotFoundError: ``config.json`` or ``weights.bin`` is missing.
            UnsafeFileError: ``weights.bin`` is not a plain state dict (refused, nothing run).
            DamagedFileError: a file is truncated, not JSON / a state dict, a field has the
                wrong type or range, or the weights do not fit the head the config describes.
        """
        config = ConfigFile.read(
            os.path.join(input_path, "config.json"), f"the {cls.__name__} config written by save()"
        )
        if config.data.get("input_embedding_size") is not None:
            config.integer("input_embedding_size")
        weights_path = os.path.join(input_path, "weights.bin")
        state = load_state_dict(weights_path)
        return build_checked(cls, lambda: cls(**config.data), config, state, weights_path)


def build_checked(
    cls: type, factory: Callable[[], nn.Module], config: ConfigFile, state: dict, weights_path: str
) -> Any:
    """``factory()`` loaded with ``state``, after checking on the ``meta`` device that the
    module it builds has exactly the keys and shapes of ``state``.

    Raises:
        DamagedFileError: the config does not build a ``cls`` (bad field) or the weights do
            not fit it; nothing large was allocated.
    """
    try:
        with torch.device("meta"):
            probe = factory()
    except Exception:  # noqa: BLE001 - bad config or a constructor that cannot run on meta:
        probe = None  # the real construction below tells which
    if probe is not None:
        expected = {name: tuple(value.shape) for name, value in probe.state_dict().items()}
        found = {name: tuple(value.shape) for name, value in state.items()}
        if expected != found:
            differ = sorted(
                f"{name}: {found.get(name, 'missing')} in the file, "
                f"{expected.get(name, 'unexpected')} from the config"
                for name in expected.keys() | found.keys()
                if expected.get(name) != found.get(name)
            )
            raise DamagedFileError(
                f"{weights_path} does not fit the {cls.__name__} described by {config.path} "
                f"(damaged, edited or mixed from two saves): {'; '.join(differ[:3])}; save the "
                "model again"
            )
    try:
        module = factory()
    except (TypeError, ValueError) as err:
        raise DamagedFileError(
            f"{config.path} is damaged or does not fit {cls.__name__}: {err}; save the model again"
        ) from err
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise DamagedFileError(
            f"{weights_path} does not fit the {cls.__name__} described by {config.path} "
            f"(damaged or mixed from two saves): {str(err).splitlines()[0]}; save the model again"
        ) from err
    return module
