"""Head wrapping an arbitrary ``nn.Sequential``; loads standard ``torch.nn`` layers safely."""

import os
from collections.abc import Iterator
from typing import Any, Optional, Union

from torch import Tensor, nn

from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.utils.checks import check_bool, check_positive_int
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.errors import DamagedFileError
from quaterion_models.utils.files import (
    check_weight_values,
    nn_building_blocks,
    save_torch,
    torch_load,
    write_json,
)
from quaterion_models.utils.trust import is_loading_trusted


class SequentialHead(EncoderHead):
    """Apply ``nn.Sequential(*args)`` to the input; no dropout. Behaves like a list of modules.

    ``(B, D_in) -> (B, output_size)``. State dict: ``_sequential.<i>.*``.

    ``save`` pickles the whole ``nn.Sequential`` (upstream's file format). ``load`` reads it
    with ``torch.load(weights_only=True)`` allowing only the ``torch.nn`` building blocks
    (every module class of ``torch.nn.modules``), so files of standard layers, the original's
    included, load without running code. A file that needs any other class (a custom layer)
    is refused with :class:`~quaterion_models.utils.UnsafeFileError` naming it, unless the
    caller trusts it: ``SimilarityModel.load(path, trusted=True)`` or
    ``SequentialHead.load(path, trusted=True)``.

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
    def load(cls, input_path: str, trusted: Optional[bool] = None) -> "SequentialHead":
        """Read ``weights.bin`` allowing only ``torch.nn`` building blocks.

        Args:
            input_path: directory written by :meth:`save`.
            trusted: ``True`` unpickles any class (**runs code from the file**); ``None``
                (default) inherits ``SimilarityModel.load(..., trusted=...)``, else ``False``.

        Raises:
            UnsafeFileError: the file needs a class outside the allowlist (named).
            DamagedFileError: a file is truncated or does not hold an ``nn.Sequential``.
        """
        config_path = os.path.join(input_path, "config.json")
        config = ConfigFile.read(config_path, "the SequentialHead config written by save()")
        config.integer("output_size")
        weights_path = os.path.join(input_path, "weights.bin")
        what = "the pickled nn.Sequential written by SequentialHead.save()"
        if trusted is not None:
            check_bool("SequentialHead.load", "trusted", trusted)
        sequential = torch_load(
            weights_path, what, trusted=is_loading_trusted(trusted), allowed=nn_building_blocks()
        )
        if not isinstance(sequential, nn.Sequential):
            raise DamagedFileError(
                f"{weights_path} is damaged or not a saved model file: expected {what}, got "
                f"{type(sequential).__name__}; save the model again"
            )
        check_weight_values(sequential.state_dict(), weights_path, trusted)
        try:
            return cls(*sequential, **config.data)
        except TypeError as err:
            raise DamagedFileError(
                f"{config_path} is damaged or not a SequentialHead config ({err}); expected "
                '{"output_size": n}; save the model again'
            ) from err
