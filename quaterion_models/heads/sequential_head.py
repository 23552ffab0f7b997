"""Head wrapping an arbitrary ``nn.Sequential`` (trusted directories only when loading)."""

import os
from collections.abc import Iterator
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.utils.checks import check_positive_int
from quaterion_models.utils._files import read_json, save_torch, write_json


class SequentialHead(EncoderHead):
    """Apply ``nn.Sequential(*args)`` to the input; no dropout. Behaves like a list of modules.

    ``(B, D_in) -> (B, output_size)``. State dict: ``_sequential.<i>.*``.

    Warning:
        ``save`` pickles the whole ``nn.Sequential`` (upstream's file format) and ``load``
        reads it with ``torch.load(weights_only=False)``, which **executes code stored in
        the file**. This is the one head that is not loaded with ``weights_only=True``:
        only load ``SequentialHead`` directories you created or otherwise trust.

    Args:
        *args: modules applied in order.
        output_size: width of the last module's output (keyword only, required).
    """

    def __init__(self, *args: nn.Module, output_size: int):
        super().__init__(input_embedding_size=None)
        self._sequential = nn.Sequential(*args)
        self._output_size = check_positive_int(
            "SequentialHead", "output_size", output_size, "pass the last module's output width"
        )

    @property
    def output_size(self) -> int:
        """The ``output_size`` given at construction."""
        return self._output_size

    def forward(self, input_vectors: Tensor, meta: Optional[list[Any]] = None) -> Tensor:
        """The wrapped sequential applied to ``input_vectors`` (no dropout)."""
        return self._sequential(input_vectors)

    def transform(self, input_vectors: Tensor) -> Tensor:
        """Identity (the work happens in :meth:`forward`)."""
        return input_vectors

    def append(self, module: nn.Module) -> "SequentialHead":
        """Append a module; returns the head for chaining."""
        self._sequential.append(module)
        return self

    def __getitem__(self, idx: Union[int, slice]) -> Union[nn.Module, nn.Sequential]:
        return self._sequential[idx]

    def __setitem__(self, idx: int, module: nn.Module) -> None:
        self._sequential[idx] = module

    def __delitem__(self, idx: Union[int, slice]) -> None:
        del self._sequential[idx]

    def __len__(self) -> int:
        return len(self._sequential)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._sequential)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self._sequential)))

    def get_config_dict(self) -> dict:
        """``{"output_size": n}``."""
        return {"output_size": self._output_size}

    def save(self, output_path: str) -> None:
        """Pickle the whole ``nn.Sequential`` into ``weights.bin``; ``config.json`` beside it."""
        save_torch(self._sequential, os.path.join(output_path, "weights.bin"))
        write_json(os.path.join(output_path, "config.json"), self.get_config_dict())

    @classmethod
    def load(cls, input_path: str) -> "SequentialHead":
        """Unpickle ``weights.bin`` with ``weights_only=False`` (**trusted directories only**)."""
        config = read_json(os.path.join(input_path, "config.json"))
        weights_path = os.path.join(input_path, "weights.bin")
        if not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"{weights_path} does not exist: expected the pickled nn.Sequential written "
                "by SequentialHead.save()"
            )
        # Trusted-only by design: this file format is a pickled module (see class docstring).
        sequential = torch.load(weights_path, map_location="cpu", weights_only=False)
        return cls(*sequential, **config)
