"""Route each record to one of several encoders sharing one embedding space."""

import os
from functools import partial
from typing import Any

import torch
from torch import Tensor

from quaterion_models.encoders.encoder import Encoder, _missing
from quaterion_models.types import CollateFnType
from quaterion_models.utils.checks import check_options
from quaterion_models.utils.classes import save_class_import
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.files import write_json


def inverse_permutation(perm: Tensor) -> Tensor:
    """Inverse of a permutation: ``inv[perm[i]] = i``.

    Args:
        perm: int64 ``(N,)``, a permutation of ``0..N-1``.

    Returns:
        int64 ``(N,)`` on the same device as ``perm``.
    """
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0], dtype=perm.dtype, device=perm.device)
    return inv


def _is_option_key(key: str) -> bool:
    """An option key that names a subdirectory (no path traversal)."""
    return key not in ("", ".", "..") and not any(char in key for char in "/\\\0")


class SwitchEncoder(Encoder):
    """Send each record to the option chosen by :meth:`encoder_selection`.

    Args:
        options: ``{key: encoder}``; all options must share one ``embedding_size``.
            Each is registered as a child module, so state-dict keys are ``<key>.<param>``.

    Raises:
        RuntimeError: the options have different embedding sizes.
    """

    def __init__(self, options: dict[str, Encoder]):
        super().__init__()
        check_options(
            type(self).__name__, options, Encoder, "pass encoders (quaterion_models.encoders)"
        )
        for key in options:
            if not isinstance(key, str) or not _is_option_key(key) or "." in key:
                raise ValueError(
                    f"{type(self).__name__}: invalid option key {key!r}: keys name the "
                    "options' save directories and child modules, so they must be non-empty "
                    "strings without '.', '/' or '\\'; use e.g. 'text', 'image'"
                )
        self.options = options
        for key, encoder in options.items():
            self.add_module(key, encoder)
        sizes = {key: encoder.embedding_size for key, encoder in options.items()}
        if len(set(sizes.values())) > 1:
            raise RuntimeError(
                f"SwitchEncoder: all options must have the same embedding_size, got "
                f"inconsistent sizes {sizes}; add a projection to the smaller encoders"
            )
        self._embedding_size = next(iter(sizes.values()), 0)

    @classmethod
    def encoder_selection(cls, record: Any) -> str:
        """Key of the option that must encode ``record`` (implement in a subclass)."""
        raise _missing(cls.__name__, "encoder_selection", "return the option key for a record")

    @property
    def trainable(self) -> bool:
        """``True`` if any option is trainable."""
        return any(encoder.trainable for encoder in self.options.values())

    @property
    def embedding_size(self) -> int:
        """The common ``embedding_size`` of the options."""
        return self._embedding_size

    def disable_gradients_if_required(self) -> None:
        """Let every option freeze itself according to its own ``trainable``."""
        for encoder in self.options.values():
            encoder.disable_gradients_if_required()

    @classmethod
    def switch_collate_fn(
        cls, batch: list[Any], encoder_collates: dict[str, CollateFnType]
    ) -> dict[str, Any]:
        """Split records by option and collate each part with that option's collate fn.

        Returns:
            ``{"ordering": {key: [original positions]}, "batches": {key: collated}}``;
            ``ordering`` lists every option key, ``batches`` only keys with records.
        """
        ordering: dict[str, list[int]] = {key: [] for key in encoder_collates}
        records: dict[str, list[Any]] = {key: [] for key in encoder_collates}
        for position, record in enumerate(batch):
            key = cls.encoder_selection(record)
            if key not in ordering:
                raise ValueError(
                    f"{cls.__name__}.encoder_selection returned {key!r} which is not an "
                    f"option; allowed keys: {sorted(ordering)}"
                )
            ordering[key].append(position)
            records[key].append(record)
        batches = {key: encoder_collates[key](part) for key, part in records.items() if part}
        return {"ordering": ordering, "batches": batches}

    def get_collate_fn(self) -> CollateFnType:
        """Picklable ``partial`` of the subclass's :meth:`switch_collate_fn`."""
        return partial(
            type(self).switch_collate_fn,
            encoder_collates={key: enc.get_collate_fn() for key, enc in self.options.items()},
        )

    @classmethod
    def extract_meta(cls, batch: list[Any]) -> list[dict]:
        """``[{"encoder": key}]`` per record; pairs with :class:`~quaterion_models.heads.SwitchHead`."""
        return [{"encoder": cls.encoder_selection(record)} for record in batch]

    def forward(self, batch: dict[str, Any]) -> Tensor:
        """Encode each part with its option and restore the record order: ``(B, d)``."""
        outputs, positions = [], []
        for key, part in batch["batches"].items():
            outputs.append(self.options[key].forward(part))
            positions.extend(batch["ordering"][key])
        joined = torch.cat(outputs, dim=0)
        order = inverse_permutation(torch.tensor(positions, dtype=torch.long))
        return joined[order.to(joined.device)]

    def save(self, output_path: str) -> None:
        """Save each option to ``output_path/<key>/`` plus ``config.json`` with their classes."""
        for key, encoder in self.options.items():
            option_path = os.path.join(output_path, key)
            os.makedirs(option_path, exist_ok=True)
            encoder.save(option_path)
        config = {"encoders": {key: save_class_import(enc) for key, enc in self.options.items()}}
        write_json(os.path.join(output_path, "config.json"), config)

    @classmethod
    def load(cls, input_path: str) -> Encoder:
        """Rebuild every option from its directory and return ``cls(options=...)``."""
        config = ConfigFile.read(
            os.path.join(input_path, "config.json"), f"the {cls.__name__} config written by save()"
        )
        records = config.mapping("encoders")
        classes = {}  # every record checked before any option is loaded
        for key, record in records.items():
            if not _is_option_key(key):
                raise config.damaged(
                    f"encoders.{key}", "is not a valid option key (a directory name)"
                )
            classes[key] = config.class_record(record, Encoder, f"encoders.{key}")
        options = {
            key: option.load(os.path.join(input_path, key)) for key, option in classes.items()
        }
        return cls(options=options)
